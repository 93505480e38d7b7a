//! Several processes working as one job: the ranks of an MPI launch (`mpirun -np N`, `srun`).
//!
//! Training and the cohort pipeline talk to the other processes through a [`Group`]: its rank
//! and size, an element-wise sum over ranks (the gradients' all-reduce), a broadcast from one
//! rank and an all-gather of bytes. A process that was not launched by MPI is a group of one
//! ([`Group::solo`]), for which every operation is the identity, so the single-process code
//! path is the same code. The MPI group (feature `mpi`, [`mpi`]) is Open MPI's or MPICH's
//! through rsmpi; Burn 0.22 itself has no collective across processes.
//!
//! Failure: MPI's default error handler ends the job on a communication error, and the launcher
//! (`mpirun`, `srun --kill-on-bad-exit`) ends every rank when one dies. A rank that errors calls
//! [`Group::abort`] after printing its error, which ends the others. A rank that waits longer
//! than `CTA2MBF_MPI_TIMEOUT` seconds (default 1800) inside one collective operation — a peer
//! hung rather than dead — prints what it waited for and exits, which ends the job too.

#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(test)]
pub mod threads;

use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// The operations the ranks of a job perform together. Every rank calls the same operations in
/// the same order; each returns once every rank has called it.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replace `values` by their element-wise sum over the ranks (the same result on every rank).
    fn sum_f32(&self, values: &mut [f32]);
    /// [`Collective::sum_f32`] in double precision.
    fn sum_f64(&self, values: &mut [f64]);
    /// `bytes` of rank `root`, on every rank (the others' `bytes` are ignored).
    fn broadcast(&self, root: usize, bytes: Vec<u8>) -> Vec<u8>;
    /// Every rank's `bytes`, in rank order, on every rank.
    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>>;
    /// End every rank of the job with exit status `code`.
    fn abort(&self, code: i32) -> !;
    /// The implementation's name, for messages (`solo`, `MPI (Open MPI 4.1.4)`).
    fn describe(&self) -> String;
    /// Seconds this rank has spent inside collective operations so far (moving data and
    /// waiting for slower ranks); 0 where nothing is measured.
    fn communication_seconds(&self) -> f64 {
        0.0
    }
}

/// The group a process works in, shared by whatever needs it (cheap to clone).
#[derive(Clone)]
pub struct Group(Arc<dyn Collective>);

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group(rank {} of {}, {})", self.rank(), self.size(), self.0.describe())
    }
}

impl Default for Group {
    fn default() -> Self {
        Group::solo()
    }
}

impl std::ops::Deref for Group {
    type Target = dyn Collective;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Group {
    /// A group of this process alone.
    pub fn solo() -> Group {
        Group(Arc::new(Solo))
    }

    /// A group over `collective`.
    pub fn new(collective: Arc<dyn Collective>) -> Group {
        Group(collective)
    }

    /// Whether this is rank 0, the one that writes a job's shared results.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Whether more than one process works in the group.
    pub fn is_distributed(&self) -> bool {
        self.size() > 1
    }

    /// The mean over ranks of `values`, in place, summed in double precision: the same on every
    /// rank, and values equal on every rank come back unchanged.
    pub fn mean_f64(&self, values: &mut [f64]) {
        if self.is_distributed() {
            self.sum_f64(values);
            let n = self.size() as f64;
            values.iter_mut().for_each(|v| *v /= n);
        }
    }

    /// One `u64` of rank 0 (a hash, a count) compared on every rank: `Err` naming the ranks that
    /// differ and `what`, on every rank.
    pub fn check_equal(&self, value: u64, what: &str) -> Result<()> {
        if !self.is_distributed() {
            return Ok(());
        }
        let values: Vec<u64> = self.all_gather(&value.to_le_bytes()).iter().map(|b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))).collect();
        let differ: Vec<String> = values.iter().enumerate().filter(|(_, v)| **v != values[0]).map(|(r, _)| r.to_string()).collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!("{what} differs between rank 0 and rank(s) {} (values {values:x?})", differ.join(", "))))
        }
    }

    /// `work`'s result on every rank, or, where any rank failed, an error on every rank naming
    /// the ranks that failed and their messages: a step that every rank must finish before the
    /// job goes on (opening a run, listing patients).
    pub fn agree<T>(&self, work: Result<T>) -> Result<T> {
        if !self.is_distributed() {
            return work;
        }
        let mine = match &work {
            Ok(_) => Vec::new(),
            Err(e) => format!("{e}").into_bytes(),
        };
        let all = self.all_gather(&mine);
        let failed: Vec<(usize, &Vec<u8>)> = all.iter().enumerate().filter(|(_, m)| !m.is_empty()).collect();
        let same_everywhere = failed.len() == all.len() && failed.iter().all(|(_, m)| *m == failed[0].1);
        match work {
            Ok(v) if failed.is_empty() => Ok(v),
            // This rank's own error when it alone failed, or when every rank failed alike.
            Err(e) if failed.len() == 1 || same_everywhere => Err(e),
            _ => Err(Error::invalid(failed.iter().map(|(r, m)| format!("rank {r}: {}", String::from_utf8_lossy(m))).collect::<Vec<_>>().join("; "))),
        }
    }
}

/// The group of a process alone: rank 0 of 1, every operation the identity.
#[derive(Debug, Clone, Copy)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _values: &mut [f32]) {}
    fn sum_f64(&self, _values: &mut [f64]) {}
    fn broadcast(&self, _root: usize, bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        vec![bytes.to_vec()]
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn describe(&self) -> String {
        "solo".into()
    }
}

/// The number of processes a launcher started this one among, read from the variables Open MPI
/// (`OMPI_COMM_WORLD_SIZE`), MPICH's Hydra and Slurm's PMI (`PMI_SIZE`) set; `None` when no MPI
/// launcher started it. (`srun --mpi=pmix` sets only `PMIX_RANK`: then the size is unknown here
/// and `Some(0)` says "launched, size to ask MPI".)
pub fn launched_size() -> Option<usize> {
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        if let Some(n) = std::env::var(var).ok().and_then(|v| v.trim().parse().ok()) {
            return Some(n);
        }
    }
    std::env::var_os("PMIX_RANK").map(|_| 0)
}

/// How long a rank waits inside one collective operation before it gives up on its peers:
/// `CTA2MBF_MPI_TIMEOUT` seconds, 1800 by default (PyTorch's NCCL default is the same 30 min).
pub fn timeout() -> Result<Duration> {
    match std::env::var("CTA2MBF_MPI_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(1800)),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            _ => Err(Error::invalid(format!("CTA2MBF_MPI_TIMEOUT={v}: expected a positive number of seconds"))),
        },
    }
}

/// The process's group: MPI's world when an MPI launcher started more than one process (and
/// this build has the `mpi` feature), else this process alone. Call once, from the main thread,
/// and keep the returned value until the job ends (dropping an MPI group finalizes MPI).
/// `command` names the subcommand, for the error of a launch this build cannot serve.
pub fn world(command: &str) -> Result<World> {
    let launched = launched_size();
    match launched {
        None | Some(1) => Ok(World::solo()),
        Some(n) => {
            #[cfg(feature = "mpi")]
            {
                let _ = n;
                let _ = command;
                mpi::MpiWorld::init().map(World::from_mpi)
            }
            #[cfg(not(feature = "mpi"))]
            {
                let size = if n == 0 { "several".to_string() } else { n.to_string() };
                Err(Error::invalid(format!(
                    "{command}: started by an MPI launcher as one of {size} processes, but this cta2mbf was built without the `mpi` feature (every process would do the whole job): build with `cargo build --release --features mpi`"
                )))
            }
        }
    }
}

/// A process's group together with what keeps MPI alive, if it is MPI's ([`world`]).
pub struct World {
    group: Group,
    #[cfg(feature = "mpi")]
    _mpi: Option<Arc<mpi::MpiWorld>>,
}

impl World {
    /// This process alone.
    pub fn solo() -> World {
        World {
            group: Group::solo(),
            #[cfg(feature = "mpi")]
            _mpi: None,
        }
    }

    #[cfg(feature = "mpi")]
    fn from_mpi(world: mpi::MpiWorld) -> World {
        let world = Arc::new(world);
        World { group: Group::new(world.clone()), _mpi: Some(world) }
    }

    /// The group.
    pub fn group(&self) -> Group {
        self.group.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solo_group_is_rank_0_of_1_and_its_operations_are_the_identity() {
        let g = Group::solo();
        assert_eq!((g.rank(), g.size(), g.is_root(), g.is_distributed()), (0, 1, true, false));
        let mut v = [1.5f32, -2.0];
        g.sum_f32(&mut v);
        assert_eq!(v, [1.5, -2.0]);
        let mut w = [0.1f64, 3.0];
        g.mean_f64(&mut w);
        assert_eq!(w, [0.1, 3.0]);
        assert_eq!(g.broadcast(0, vec![7, 8]), vec![7, 8]);
        assert_eq!(g.all_gather(&[1, 2]), vec![vec![1, 2]]);
        assert!(g.check_equal(42, "hash").is_ok());
        assert_eq!(g.agree(Ok(3)).unwrap(), 3);
        assert_eq!(g.agree::<()>(Err(Error::invalid("no"))).unwrap_err().to_string(), "no");
    }

    #[test]
    fn the_timeout_is_read_and_checked() {
        // The variable is read once per call; the test only sets it within itself.
        // SAFETY: no other test reads or writes CTA2MBF_MPI_TIMEOUT.
        unsafe { std::env::set_var("CTA2MBF_MPI_TIMEOUT", "2.5") };
        assert_eq!(timeout().unwrap(), Duration::from_millis(2500));
        unsafe { std::env::set_var("CTA2MBF_MPI_TIMEOUT", "soon") };
        assert!(timeout().unwrap_err().to_string().contains("CTA2MBF_MPI_TIMEOUT=soon"));
        unsafe { std::env::remove_var("CTA2MBF_MPI_TIMEOUT") };
        assert_eq!(timeout().unwrap(), Duration::from_secs(1800));
    }
}
