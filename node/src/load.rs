//! This machine's CPU and memory, from sysinfo: what `node_stats` reports and what the heartbeat
//! gossips.

use std::sync::Mutex;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub cpu_percent: f32,
    pub cpus: usize,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
}

/// Reads the machine. CPU usage is the difference between two refreshes, so the system is kept
/// between readings.
pub struct Sampler {
    /// `None` where sysinfo cannot read this machine.
    system: Mutex<Option<System>>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampler")
    }
}

impl Default for Sampler {
    fn default() -> Self {
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        Sampler { system: Mutex::new(System::new_with_specifics(refresh).ok()) }
    }
}

impl Sampler {
    /// A fresh reading; `None` where this machine cannot be read. Blocks briefly (it reads /proc).
    pub fn sample(&self) -> Option<Sample> {
        let mut guard = self.system.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let system = guard.as_mut()?;
        system.refresh_cpu_usage();
        system.refresh_memory();
        Some(Sample {
            cpu_percent: system.global_cpu_usage(),
            cpus: system.cpus().len(),
            memory_total_bytes: system.total_memory(),
            memory_used_bytes: system.used_memory(),
        })
    }
}
