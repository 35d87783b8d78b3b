/* troupe: umbrella header. Includes every public header, nothing else. */
#ifndef TROUPE_H
#define TROUPE_H

#include "troupe/error.h"
#include "troupe/log.h"
#include "troupe/buf.h"
#include "troupe/msg.h"
#include "troupe/actor.h"
#include "troupe/runtime.h"
#include "troupe/timer.h"
#include "troupe/supervisor.h"
#include "troupe/codec.h"
#include "troupe/budget.h"
#include "troupe/conn.h"
#include "troupe/server.h"
#include "troupe/client.h"
#include "troupe/tls.h"
#include "troupe/embedded.h"
#include "troupe/dgram.h"
#include "troupe/bclient.h"
#include "troupe/http.h"
#include "troupe/ws.h"

#endif
