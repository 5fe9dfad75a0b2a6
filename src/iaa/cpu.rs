//! What this CPU offers the IAA path (CPUID), and where the calling thread
//! runs (its NUMA node).

/// CPUID.(EAX=7, ECX=0) features of the submission and wait instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub enqcmd: bool,
    pub movdir64b: bool,
    pub waitpkg: bool,
}

impl Features {
    /// This CPU's features.
    pub fn detect() -> Features {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            // SAFETY: CPUID exists on every x86_64 CPU; leaf 0 gives the
            // highest leaf, which guards the read of leaf 7. (Newer Rust
            // declares these intrinsics safe; the block serves older ones.)
            #[allow(unused_unsafe)]
            let (max_leaf, leaf7) = unsafe {
                let max_leaf = std::arch::x86_64::__cpuid(0).eax;
                (max_leaf, std::arch::x86_64::__cpuid_count(7, 0))
            };
            if max_leaf < 7 {
                return Features::default();
            }
            Features {
                waitpkg: leaf7.ecx & (1 << 5) != 0,
                movdir64b: leaf7.ecx & (1 << 28) != 0,
                enqcmd: leaf7.ecx & (1 << 29) != 0,
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        Features::default()
    }
}

/// The NUMA node of the CPU the calling thread runs on, if the kernel says.
pub fn current_node() -> Option<i32> {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        let (mut cpu, mut node) = (0u32, 0u32);
        // SAFETY: getcpu writes two unsigned ints through valid pointers; the
        // third argument (a cache) must be NULL on current kernels.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_getcpu,
                &mut cpu as *mut u32,
                &mut node as *mut u32,
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        (rc == 0).then_some(node as i32)
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_has_a_node() {
        assert!(current_node().is_some_and(|node| node >= 0));
        // Whatever the CPU, detection must not fault.
        let _ = Features::detect();
    }
}
