//! The MPI group (feature `mpi`): `MPI_COMM_WORLD` through rsmpi, every call serialized and
//! watched for a peer that never comes (module docs of [`super`]).

use super::Collective;
use crate::error::{Error, Result};
use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Elements per MPI call: counts are C `int`s.
const CHUNK: usize = 1 << 28;

/// MPI's world communicator, initialized by this process.
pub struct MpiWorld {
    comm: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    library: String,
    busy: Arc<Mutex<Option<(Instant, &'static str)>>>,
    /// Seconds spent in collective operations.
    spent: Mutex<f64>,
    // Dropped last: finalizes MPI.
    _universe: Universe,
}

// SAFETY: MPI is initialized with at least MPI_THREAD_SERIALIZED (checked in `init`), and every
// use of the communicator goes through the mutex, so no two threads call MPI at once.
unsafe impl Send for MpiWorld {}
// SAFETY: as above.
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    /// Initialize MPI (serialized threading) and start the watchdog of collective operations.
    pub fn init() -> Result<MpiWorld> {
        let timeout = super::timeout()?;
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| Error::invalid("MPI was already initialized in this process"))?;
        if threading < Threading::Serialized {
            return Err(Error::invalid(format!("the MPI library offers only {threading:?} threading; cta2mbf needs Serialized (its loader threads run beside MPI calls)")));
        }
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        let library = mpi::environment::library_version().ok().and_then(|v| v.lines().next().map(|l| l.trim().trim_end_matches(',').to_string())).unwrap_or_else(|| "MPI".into());
        let busy: Arc<Mutex<Option<(Instant, &'static str)>>> = Arc::new(Mutex::new(None));
        let watched = busy.clone();
        std::thread::Builder::new()
            .name("mpi-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(500).min(timeout));
                    let state = *watched.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((since, what)) = state
                        && since.elapsed() > timeout
                    {
                        eprintln!(
                            "cta2mbf: error: rank {rank} of {size}: waited {:.0} s in {what} for the other ranks (CTA2MBF_MPI_TIMEOUT): a rank is stuck or gone; stopping this one",
                            since.elapsed().as_secs_f64()
                        );
                        // SAFETY: ends the process at once; the launcher then ends the other ranks.
                        unsafe { libc::_exit(1) };
                    }
                }
            })
            .map_err(|e| Error::invalid(format!("cannot start the MPI watchdog thread: {e}")))?;
        Ok(MpiWorld { comm: Mutex::new(comm), rank, size, library, busy, spent: Mutex::new(0.0), _universe: universe })
    }

    /// `f` on the communicator, alone, under the watchdog.
    fn call<T>(&self, what: &'static str, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
        let comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = Some((started, what));
        let out = f(&comm);
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.spent.lock().unwrap_or_else(|p| p.into_inner()) += started.elapsed().as_secs_f64();
        out
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, values: &mut [f32]) {
        self.call("an all-reduce", |comm| {
            for chunk in values.chunks_mut(CHUNK) {
                let send = chunk.to_vec();
                comm.all_reduce_into(&send[..], chunk, SystemOperation::sum());
            }
        })
    }

    fn sum_f64(&self, values: &mut [f64]) {
        self.call("an all-reduce", |comm| {
            for chunk in values.chunks_mut(CHUNK) {
                let send = chunk.to_vec();
                comm.all_reduce_into(&send[..], chunk, SystemOperation::sum());
            }
        })
    }

    fn broadcast(&self, root: usize, bytes: Vec<u8>) -> Vec<u8> {
        self.call("a broadcast", |comm| {
            let process = comm.process_at_rank(root as i32);
            let mut len = bytes.len() as u64;
            process.broadcast_into(&mut len);
            let mut buf = if self.rank == root { bytes } else { vec![0u8; len as usize] };
            for chunk in buf.chunks_mut(CHUNK) {
                process.broadcast_into(chunk);
            }
            buf
        })
    }

    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.call("an all-gather", |comm| {
            // One leading byte per rank: Open MPI refuses an all-gather of nothing at all.
            let bytes = &[&[0u8][..], bytes].concat();
            let mut counts = vec![0i32; self.size];
            let mine = i32::try_from(bytes.len()).expect("an all-gather of under 2 GiB per rank");
            comm.all_gather_into(&mine, &mut counts[..]);
            let displs: Vec<i32> = counts.iter().scan(0i32, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let mut all = vec![0u8; total];
            {
                let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
                comm.all_gather_varcount_into(bytes, &mut partition);
            }
            counts.iter().zip(&displs).map(|(&c, &d)| all[d as usize + 1..(d + c) as usize].to_vec()).collect()
        })
    }

    fn abort(&self, code: i32) -> ! {
        // Not through the mutex: the thread holding it may be the one waiting for a dead peer.
        // SAFETY: MPI_Abort may be called from any thread of an initialized MPI process.
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
        }
        std::process::exit(code)
    }

    fn describe(&self) -> String {
        format!("{}, rank {} of {}", self.library, self.rank, self.size)
    }

    fn communication_seconds(&self) -> f64 {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }
}
