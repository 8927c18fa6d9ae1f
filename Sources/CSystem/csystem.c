#define _GNU_SOURCE
#include "csystem.h"
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <fcntl.h>
#include <stdio.h>
#ifdef __linux__
#include <linux/fs.h>
#endif

int sfk_clone_file(int source, int destination) {
#ifdef FICLONE
    return ioctl(destination, FICLONE, source);
#else
    errno = EOPNOTSUPP;
    return -1;
#endif
}

/* Read/write loop for filesystems or kernels without copy_file_range. */
static int copy_by_reading(int source, int destination, int64_t length) {
    const size_t chunk = 8u << 20;
    char *buffer = malloc(chunk);
    if (buffer == NULL) return -1;
    while (length > 0) {
        ssize_t got = read(source, buffer, length < (int64_t)chunk ? (size_t)length : chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) { free(buffer); if (got == 0) errno = EIO; return -1; }
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(destination, buffer + done, (size_t)(got - done));
            if (put < 0 && errno == EINTR) continue;
            if (put <= 0) { free(buffer); return -1; }
            done += put;
        }
        length -= got;
    }
    free(buffer);
    return 0;
}

int sfk_copy_range(int source, int destination, int64_t length) {
    while (length > 0) {
        ssize_t copied = copy_file_range(source, NULL, destination, NULL, (size_t)(length < (1ll << 30) ? length : (1ll << 30)), 0);
        if (copied < 0 && errno == EINTR) continue;
        if (copied < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP))
            return copy_by_reading(source, destination, length);
        if (copied < 0) return -1;
        if (copied == 0) { errno = EIO; return -1; }
        length -= copied;
    }
    return 0;
}

int sfk_open_anonymous(const char *folder, int mode) {
#ifdef O_TMPFILE
    return open(folder, O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
#else
    (void)folder; (void)mode;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

int sfk_link_anonymous(int descriptor, const char *path) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", descriptor);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) return 0;
    if (errno == EEXIST) return -1;
#ifdef AT_EMPTY_PATH
    return linkat(descriptor, "", AT_FDCWD, path, AT_EMPTY_PATH);
#else
    return -1;
#endif
}

int sfk_lock_exclusive(int descriptor) {
    while (flock(descriptor, LOCK_EX) != 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}
