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

#endif
