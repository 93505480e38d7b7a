//! A group whose ranks are threads of one process: the tests' stand-in for an MPI job, with the
//! same contract (every rank calls the same operations in the same order; results are equal on
//! every rank, sums taken in rank order). A rank's `abort` makes every rank's next or current
//! operation panic, as MPI_Abort ends every process.

use super::{Collective, Group};
use std::sync::{Arc, Condvar, Mutex};

/// The exchange every operation is built on: each rank deposits its bytes, and once all have,
/// each takes every rank's; the round ends when every rank has taken them.
struct Board {
    state: Mutex<Round>,
    changed: Condvar,
}

struct Round {
    /// Each rank's deposit of this round.
    slots: Vec<Option<Vec<u8>>>,
    /// Ranks that have taken this round's deposits.
    taken: usize,
    /// Increments when a round ends.
    generation: u64,
    /// A rank aborted the job.
    aborted: bool,
}

/// One rank of a [`ThreadGroup`].
struct ThreadRank {
    rank: usize,
    size: usize,
    board: Arc<Board>,
}

impl ThreadRank {
    fn wait<'a>(&self, round: std::sync::MutexGuard<'a, Round>) -> std::sync::MutexGuard<'a, Round> {
        let round = self.board.changed.wait(round).unwrap_or_else(|p| p.into_inner());
        if round.aborted {
            drop(round);
            panic!("rank {}: another rank aborted the job", self.rank);
        }
        round
    }

    fn exchange(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let mut round = self.board.state.lock().unwrap_or_else(|p| p.into_inner());
        if round.aborted {
            drop(round);
            panic!("rank {}: another rank aborted the job", self.rank);
        }
        // Wait for the previous round to be emptied by every rank.
        while round.slots[self.rank].is_some() {
            round = self.wait(round);
        }
        round.slots[self.rank] = Some(mine);
        let generation = round.generation;
        self.board.changed.notify_all();
        while round.generation == generation && round.slots.iter().any(Option::is_none) {
            round = self.wait(round);
        }
        let all: Vec<Vec<u8>> = round.slots.iter().map(|s| s.clone().expect("every rank deposited")).collect();
        round.taken += 1;
        if round.taken == self.size {
            round.slots.iter_mut().for_each(|s| *s = None);
            round.taken = 0;
            round.generation += 1;
            self.board.changed.notify_all();
        } else {
            while round.generation == generation {
                round = self.wait(round);
            }
        }
        all
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sum_f32(&self, values: &mut [f32]) {
        let all = self.exchange(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        values.iter_mut().for_each(|v| *v = 0.0);
        for bytes in all {
            for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
                *v += f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
        }
    }
    fn sum_f64(&self, values: &mut [f64]) {
        let all = self.exchange(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        values.iter_mut().for_each(|v| *v = 0.0);
        for bytes in all {
            for (v, b) in values.iter_mut().zip(bytes.chunks_exact(8)) {
                *v += f64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
    }
    fn broadcast(&self, root: usize, bytes: Vec<u8>) -> Vec<u8> {
        self.exchange(bytes).swap_remove(root)
    }
    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.exchange(bytes.to_vec())
    }
    fn abort(&self, code: i32) -> ! {
        self.board.state.lock().unwrap_or_else(|p| p.into_inner()).aborted = true;
        self.board.changed.notify_all();
        panic!("rank {} aborted the job (exit status {code})", self.rank)
    }
    fn describe(&self) -> String {
        "threads".into()
    }
}

/// `size` ranks as threads: one [`Group`] per rank, to hand to one thread each.
pub fn thread_group(size: usize) -> Vec<Group> {
    let board = Arc::new(Board { state: Mutex::new(Round { slots: vec![None; size], taken: 0, generation: 0, aborted: false }), changed: Condvar::new() });
    (0..size).map(|rank| Group::new(Arc::new(ThreadRank { rank, size, board: board.clone() }))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ranks_sum_broadcast_gather_and_agree_as_one_job() {
        let groups = thread_group(3);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|g| {
                    s.spawn(move || {
                        let r = g.rank();
                        let mut v = [r as f32, 1.0];
                        g.sum_f32(&mut v);
                        let mut m = [r as f64 * 2.0];
                        g.mean_f64(&mut m);
                        let b = g.broadcast(1, vec![r as u8; r + 1]);
                        let all = g.all_gather(&[r as u8]);
                        let same = g.check_equal(7, "seven").is_ok();
                        let differ = g.check_equal(r as u64, "the rank").unwrap_err().to_string();
                        let agreed = g.agree(if r == 2 { Err(crate::Error::invalid("disk full")) } else { Ok(()) }).unwrap_err().to_string();
                        let alike = g.agree::<()>(Err(crate::Error::invalid("bad config"))).unwrap_err().to_string();
                        assert_eq!(alike, "bad config", "the same error on every rank is told once");
                        (r, v, m, b, all, same, differ, agreed)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, v, m, b, all, same, differ, agreed) in results {
            assert_eq!(v, [3.0, 3.0]);
            assert_eq!(m, [2.0]);
            assert_eq!(b, vec![1, 1]);
            assert_eq!(all, vec![vec![0], vec![1], vec![2]]);
            assert!(same);
            assert!(differ.contains("rank(s) 1, 2") && differ.contains("the rank"), "{differ}");
            // The failing rank keeps its own error; the others name it.
            assert_eq!(agreed, if r == 2 { "disk full".to_string() } else { "rank 2: disk full".to_string() });
        }
    }
}
