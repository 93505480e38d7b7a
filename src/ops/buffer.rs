//! Output buffers that parallel kernels fill in disjoint parts: a shareable raw pointer and a
//! vector whose every element the kernel writes, so it is not zeroed first.

use std::mem::MaybeUninit;

/// A raw pointer into one buffer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);
// SAFETY: every user writes only a part of the buffer no other task touches (see each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// A vector of `len` floats filled by `fill`, which must write every one of them through the
/// pointer it gets (and read none before writing it).
///
/// # Safety
/// `fill` writes all `len` elements.
pub(crate) unsafe fn filled_by(len: usize, fill: impl FnOnce(SharedMut)) -> Vec<f32> {
    let mut v: Vec<MaybeUninit<f32>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit elements need no initialization.
    unsafe { v.set_len(len) };
    fill(SharedMut(v.as_mut_ptr().cast()));
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: every element was written (the caller's contract); same allocation and layout.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), len, v.capacity()) }
}
