//! The trace of a run: every line folds into a hash (FNV-1a, 64 bit: stable across
//! platforms and Rust versions, unlike `DefaultHasher`), and the last lines are kept for a
//! failure report.

use std::collections::VecDeque;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A run's trace.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    lines: VecDeque<String>,
    lines_max: usize,
    count: u64,
}

impl Trace {
    /// An empty trace keeping the last `lines_max` lines.
    pub fn new(lines_max: usize) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            lines: VecDeque::with_capacity(lines_max.min(1024)),
            lines_max,
            count: 0,
        }
    }

    /// Appends a line.
    pub fn push(&mut self, line: String) {
        for byte in line.as_bytes().iter().chain(b"\n") {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
        self.count += 1;
        if self.lines_max == 0 {
            return;
        }
        if self.lines.len() == self.lines_max {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The kept lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    /// Lines pushed so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_every_line_and_the_tail_keeps_the_last() {
        let mut first = Trace::new(2);
        let mut second = Trace::new(2);
        for line in ["a", "b", "c"] {
            first.push(line.to_string());
            second.push(line.to_string());
        }
        assert_eq!(first.hash(), second.hash());
        assert_eq!(first.tail(), vec!["b", "c"]);
        second.push("d".to_string());
        assert_ne!(first.hash(), second.hash());
    }
}
