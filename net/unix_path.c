#include "unix_path.h"

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "troupe/error.h"

int tr__unix_path_clear(const char *path, int type)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        return -EEXIST;
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof(un.sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(un.sun_path, path, n + 1);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int rc = connect(fd, (struct sockaddr *)&un, sizeof(un));
    int err = errno;
    close(fd);
    if (rc == 0 || err == EAGAIN) {
        return -EADDRINUSE; /* someone answers (or its backlog is full) */
    }
    if (err != ECONNREFUSED) {
        return -err;
    }
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int tr__unix_path_own(tr__unix_path *up, const char *path, uint32_t mode, const char *group)
{
    if (chmod(path, mode != 0 ? (mode_t)mode : 0600) < 0) {
        return -errno;
    }
    if (group != NULL) {
        struct group gr, *found = NULL;
        char buf[4096];
        int rc = getgrnam_r(group, &gr, buf, sizeof(buf), &found);
        if (found == NULL) {
            return rc != 0 ? -rc : TR_EINVAL; /* no such group */
        }
        if (chown(path, (uid_t)-1, gr.gr_gid) < 0) {
            return -errno;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        return -errno;
    }
    size_t n = strlen(path);
    if (n >= sizeof(up->path)) {
        return -ENAMETOOLONG;
    }
    memcpy(up->path, path, n + 1);
    up->dev = st.st_dev;
    up->ino = st.st_ino;
    up->made = true;
    return 0;
}

int tr__unix_path_bind(tr__unix_path *up, int fd, int type, const struct sockaddr_storage *ss,
                       socklen_t len, uint32_t mode, const char *group)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    bool file = ss->ss_family == AF_UNIX && un->sun_path[0] != '\0';
    if (!file) {
        return bind(fd, (const struct sockaddr *)ss, len) < 0 ? -errno : 0;
    }
    int rc = tr__unix_path_clear(un->sun_path, type);
    if (rc < 0) {
        return rc;
    }
    /* Linux creates the socket file with the socket's own mode (less the
     * umask): private until the mode asked for is set, with no window
     * where others could connect. umask itself is process-wide, and not
     * ours to change. */
    fchmod(fd, 0600);
    if (bind(fd, (const struct sockaddr *)ss, len) < 0) {
        return -errno;
    }
    rc = tr__unix_path_own(up, un->sun_path, mode, group);
    if (rc < 0) {
        unlink(un->sun_path);
    }
    return rc;
}

void tr__unix_path_unlink(tr__unix_path *up)
{
    struct stat st;
    if (!up->made) {
        return;
    }
    up->made = false;
    if (lstat(up->path, &st) == 0 && st.st_dev == up->dev && st.st_ino == up->ino) {
        unlink(up->path);
    }
}
