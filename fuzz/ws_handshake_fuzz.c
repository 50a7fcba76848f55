
/*
 * libFuzzer target for the handshake checks of src/ngx_do_ws_proto.c.
 *
 * Input: lines split at '\n'.  The first six are the header values, in
 * the order Upgrade, Connection, Sec-WebSocket-Version, Sec-WebSocket-Key,
 * Origin, Sec-WebSocket-Protocol; a line that is missing is a header that
 * is absent.  Later lines starting with 'o' add an origin to the
 * allow-list, with 'p' a subprotocol to the server's list.  Each value
 * lives in a heap buffer of its exact size, so AddressSanitizer sees any
 * read past it.
 *
 * Checked: every verdict has its status and reason; an accepted request
 * has a valid key, whose Sec-WebSocket-Accept is 28 base64 symbols; an
 * allowed origin is on the list; a chosen subprotocol is the server's
 * first that the client offers, found by a search written apart from the
 * code it checks.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_do_ws_proto.h"


#define MAX_LIST  8


static u_char *
copy(const uint8_t *p, size_t n)
{
    u_char  *d;

    d = malloc(n ? n : 1);
    if (d == NULL) {
        abort();
    }

    memcpy(d, p, n);

    return d;
}


static int
is_sep(u_char c)
{
    return c == ',' || c == ' ' || c == '\t';
}


/* whether list holds name as a whole token, case-sensitive */
static int
offers(const ngx_do_ws_str_t *list, const ngx_do_ws_str_t *name)
{
    size_t  i;

    if (list->data == NULL || name->len == 0 || name->len > list->len) {
        return 0;
    }

    for (i = 0; i < name->len; i++) {
        if (is_sep(name->data[i])) {
            return 0;
        }
    }

    for (i = 0; i + name->len <= list->len; i++) {
        if ((i == 0 || is_sep(list->data[i - 1]))
            && (i + name->len == list->len
                || is_sep(list->data[i + name->len]))
            && memcmp(list->data + i, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static int
lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     rc;
    size_t                  i, k, start, nfields;
    u_char                  accept[NGX_DO_WS_ACCEPT_LEN];
    unsigned                status;
    ngx_do_ws_str_t         fields[6], origins[MAX_LIST];
    ngx_do_ws_str_t         protocols[MAX_LIST], *s;
    ngx_do_ws_policy_t      policy;
    ngx_do_ws_handshake_t   hs;
    const ngx_do_ws_str_t  *proto;

    memset(fields, 0, sizeof(fields));
    memset(&policy, 0, sizeof(policy));
    policy.origins = origins;
    policy.protocols = protocols;

    nfields = 0;
    start = 0;

    for (i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n') {
            continue;
        }

        s = NULL;

        if (nfields < 6) {
            s = &fields[nfields++];
            s->data = copy(data + start, i - start);
            s->len = i - start;

        } else if (i > start && data[start] == 'o'
                   && policy.norigins < MAX_LIST)
        {
            s = &origins[policy.norigins++];
            s->data = copy(data + start + 1, i - start - 1);
            s->len = i - start - 1;

        } else if (i > start && data[start] == 'p'
                   && policy.nprotocols < MAX_LIST)
        {
            s = &protocols[policy.nprotocols++];
            s->data = copy(data + start + 1, i - start - 1);
            s->len = i - start - 1;
        }

        start = i + 1;
    }

    hs.upgrade = fields[0];
    hs.connection = fields[1];
    hs.version = fields[2];
    hs.key = fields[3];
    hs.origin = fields[4];
    hs.protocol = fields[5];

    rc = ngx_do_ws_handshake_check(&hs, &policy, &proto);

    status = ngx_do_ws_handshake_status(rc);

    if (rc < NGX_DO_WS_HS_OK || rc > NGX_DO_WS_HS_BAD_ORIGIN
        || ngx_do_ws_handshake_reason(rc) == NULL
        || (status != 101 && status != 400 && status != 403
            && status != 426))
    {
        abort();
    }

    if (ngx_do_ws_token_list_has(&hs.upgrade, "websocket")
        != (rc != NGX_DO_WS_HS_NO_UPGRADE))
    {
        abort();
    }

    if (ngx_do_ws_accept_key(&hs.key, accept) == 0) {
        for (i = 0; i < NGX_DO_WS_ACCEPT_LEN - 1; i++) {
            if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789+/", accept[i]) == NULL
                || accept[i] == '\0')
            {
                abort();
            }
        }

        if (accept[NGX_DO_WS_ACCEPT_LEN - 1] != '=') {
            abort();
        }

    } else if (hs.key.len == NGX_DO_WS_KEY_LEN) {
        abort();
    }

    if (rc != NGX_DO_WS_HS_OK) {
        if (proto != NULL) {
            abort();
        }

        goto done;
    }

    if (!ngx_do_ws_key_valid(&hs.key) || hs.version.len != 2) {
        abort();
    }

    if (policy.norigins && hs.origin.data) {
        for (i = 0; i < policy.norigins; i++) {
            if (origins[i].len != hs.origin.len) {
                continue;
            }

            for (k = 0; k < hs.origin.len; k++) {
                if (lower(origins[i].data[k]) != lower(hs.origin.data[k])) {
                    break;
                }
            }

            if (k == hs.origin.len) {
                break;
            }
        }

        if (i == policy.norigins) {
            abort();
        }
    }

    for (i = 0; i < policy.nprotocols; i++) {
        if (offers(&hs.protocol, &protocols[i])) {
            break;
        }
    }

    if (i < policy.nprotocols ? proto != &protocols[i] : proto != NULL) {
        abort();
    }

done:

    for (i = 0; i < nfields; i++) {
        free((void *) fields[i].data);
    }

    for (i = 0; i < policy.norigins; i++) {
        free((void *) origins[i].data);
    }

    for (i = 0; i < policy.nprotocols; i++) {
        free((void *) protocols[i].data);
    }

    return 0;
}
