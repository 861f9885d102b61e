// SPDX-License-Identifier: MPL-2.0
//! The process's open-file limit against the connections a server may
//! hold: each connection is a file descriptor, and Linux's usual soft limit
//! (1024) is below what `max-clients` may ask for.

/// What `ensure_open_files` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFiles {
    /// The soft limit was already enough.
    Enough,
    /// The soft limit was raised (up to the hard limit, which allowed it).
    Raised { from: u64, to: u64 },
    /// Even the hard limit is too low: the soft limit is now at it.
    TooLow { limit: u64 },
}

/// Raises this process's soft open-file limit so that `needed` descriptors
/// fit, as far as the hard limit allows (no privilege needed for that).
pub fn ensure_open_files(needed: u64) -> std::io::Result<OpenFiles> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct given, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // rlim_t is u64 on Linux.
    let (soft, hard): (u64, u64) = (lim.rlim_cur, lim.rlim_max);
    if soft >= needed {
        return Ok(OpenFiles::Enough);
    }
    let to = needed.min(hard);
    if to > soft {
        let new = libc::rlimit {
            rlim_cur: to,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(if to >= needed {
        OpenFiles::Raised { from: soft, to }
    } else {
        OpenFiles::TooLow {
            limit: to.max(soft),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_the_soft_limit_as_far_as_the_hard_one_allows() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let (soft, hard): (u64, u64) = (lim.rlim_cur, lim.rlim_max);
        assert_eq!(ensure_open_files(soft.min(16)).unwrap(), OpenFiles::Enough);
        if hard > soft && hard < u64::MAX {
            let want = soft + 1;
            assert_eq!(
                ensure_open_files(want).unwrap(),
                OpenFiles::Raised {
                    from: soft,
                    to: want
                }
            );
        }
        if hard < u64::MAX / 2 {
            assert!(matches!(
                ensure_open_files(hard + 1).unwrap(),
                OpenFiles::TooLow { limit } if limit == hard
            ));
        }
    }
}
