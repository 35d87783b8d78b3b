/* What only Unix stream connections have: the peer's credentials
 * (SO_PEERCRED). */
#include "conn_impl.h"

#include <errno.h>
#include <sys/socket.h>

int tr_conn_peer_cred(const tr_conn *c, tr_peer_cred *out)
{
    struct ucred uc;
    socklen_t ul = sizeof(uc);
    if (c->fd < 0 || c->peer.ss_family != AF_UNIX) {
        return TR_EINVAL;
    }
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0) {
        return -errno;
    }
    out->pid = (int32_t)uc.pid;
    out->uid = (uint32_t)uc.uid;
    out->gid = (uint32_t)uc.gid;
    return 0;
}
