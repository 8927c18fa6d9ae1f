#ifndef SLOWFASTKIT_CSYSTEM_H
#define SLOWFASTKIT_CSYSTEM_H
#include <stdint.h>
#include <sys/types.h>

/// Makes `destination` share `source`'s blocks (FICLONE) where the filesystem can.
/// Returns 0 on success, -1 with errno set otherwise.
int sfk_clone_file(int source, int destination);

/// Copies `length` bytes from `source` to `destination` inside the kernel
/// (copy_file_range, falling back to read/write). Returns 0 or -1 with errno set.
int sfk_copy_range(int source, int destination, int64_t length);

/// Opens an anonymous file in `folder` (O_TMPFILE): it has no name, so it cannot outlive
/// the process. Returns the descriptor, or -1 with errno set (EOPNOTSUPP, EISDIR, EINVAL
/// where the filesystem or kernel has no O_TMPFILE).
int sfk_open_anonymous(const char *folder, int mode);

/// Gives the anonymous file `descriptor` the name `path` (linkat through /proc/self/fd,
/// else AT_EMPTY_PATH). Returns 0 or -1 with errno set (EEXIST when `path` exists).
int sfk_link_anonymous(int descriptor, const char *path);

/// An exclusive advisory lock (flock) on `descriptor`, waiting for it. Returns 0 or -1.
int sfk_lock_exclusive(int descriptor);

#endif
