
/*
 * The "room" class: a chat room over WebSockets, and its HTTP side.
 *
 * Parameters of do_namespace: history=N (messages kept, default 100,
 * 0..10000), max_members=N (default 10000, 0: no limit), presence=on|off
 * (off: no join/leave events, no names in welcome); the namespace's
 * max_message= bounds one message, also one posted over HTTP (413).
 *
 * WebSocket (do_pass with member=): a client joins with
 * GET /rooms/NAME?since=SEQ (since: optional) and gets, in order:
 *   {"type":"welcome","member":M,"seq":S,"first":F,"count":N,
 *    "members":[its own name and up to 100 others]}
 *   {"type":"reset","since":X,"first":F}      only when X < F - 1
 *   the stored messages after since (all of the history without since)
 *   then every message and presence event of the room, live.
 * A text frame from a member is a message:
 *   {"type":"message","seq":S,"from":M,"data":TEXT,"time":MS}
 * sent to every member, the sender included (its acknowledgement: it is
 * stored before anyone receives it).  Presence events carry no seq:
 *   {"type":"join"|"leave","member":M,"count":N,"time":MS}
 * Close codes: 1003 a binary frame, 1008 refused (no member name, the room
 * is full), 1013 the member fell behind or missed a message (reconnect
 * with since= the last seq received: nothing is lost).
 *
 * HTTP on the same location:
 *   GET               {"count":N,"members":[...],"seq":S,"first":F,
 *                      "history":H}
 *   GET ?since=X      {"messages":[...],"seq":S,"first":F,"reset":bool}
 *   POST body ?from=M publishes body as a message from M (default
 *                     "server"): 200 {"seq":S}
 */


#ifndef _NGX_DO_ROOM_H_INCLUDED_
#define _NGX_DO_ROOM_H_INCLUDED_


#include "ngx_http_do.h"


extern ngx_do_class_t  ngx_do_room_class;


#endif /* _NGX_DO_ROOM_H_INCLUDED_ */
