
/*
 * The store's JSON where its cost must follow its size, or where jansson
 * would cost more than the call itself, written by hand.
 *
 * A listing is measured before it is written: each key and value is
 * counted as it will be encoded (a control byte is six bytes, \u00XX), so
 * the list's budget bounds the response itself, and the body is written
 * once, in its exact size, into the reply's buffer (jansson would build
 * every item as an object, then the text, then copies of it).  Strings
 * are those of jansson's compact output: valid UTF-8 (as jansson checks
 * it) as a JSON string, with \" \\ \b \f \n \r \t and \u00XX for the
 * other control bytes; anything else as {"base64": "..."}.
 *
 * A batch is scanned before jansson parses it: its members, their entries
 * and its nesting are counted, so that a body of a million tiny entries
 * costs one pass over its bytes, not a tree of a million nodes.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_do.h"
#include "ngx_do_store.h"


static size_t ngx_do_store_json_item_len(ngx_do_kv_t *kv);
static size_t ngx_do_store_json_len(ngx_str_t *s);
static u_char *ngx_do_store_json_write(u_char *p, ngx_str_t *s);
static size_t ngx_do_store_json_string_len(ngx_str_t *s);
static size_t ngx_do_store_json_utf8(u_char *p, u_char *last);


/* the short escapes of control bytes; 0: \u00XX */
static u_char  ngx_do_store_json_short[0x20] = {
    0, 0, 0, 0, 0, 0, 0, 0, 'b', 't', 'n', 0, 'f', 'r', 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
};


/*
 * A listing's reply, {"items":[{"key":K,"value":V,"version":N},...],
 * "truncated":B}, of the first n items, or of fewer: as many as budget
 * bytes hold (one at least).  Measured, then written once, in place.
 */
ngx_int_t
ngx_do_store_json_list(ngx_do_turn_t *t, ngx_do_kv_t *kv, ngx_uint_t n,
    ngx_uint_t truncated, size_t budget)
{
    u_char      *p;
    size_t       len, size;
    ngx_uint_t   i;

    len = sizeof("{\"items\":[],\"truncated\":false}") - 1;

    for (i = 0; i < n; i++) {
        size = ngx_do_store_json_item_len(&kv[i]) + (i ? 1 : 0);

        if (i && len + size > budget) {
            truncated = 1;
            break;
        }

        len += size;
    }

    n = i;
    len -= truncated ? 1 : 0;

    p = ngx_do_reply_buf(t, NGX_HTTP_OK, "application/json", len, 0);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, "{\"items\":[", sizeof("{\"items\":[") - 1);

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, "{\"key\":", sizeof("{\"key\":") - 1);
        p = ngx_do_store_json_write(p, &kv[i].key);
        p = ngx_cpymem(p, ",\"value\":", sizeof(",\"value\":") - 1);
        p = ngx_do_store_json_write(p, &kv[i].value);
        p = ngx_sprintf(p, ",\"version\":%uL}", kv[i].version);
    }

    (void) ngx_sprintf(p, "],\"truncated\":%s}",
                       truncated ? "true" : "false");

    return NGX_OK;
}


/*
 * The reply of a key's write or increment, {"key":K<rest>, where rest
 * holds the other members and the closing brace; written in place, as
 * jansson would write it (a tiny reply costs less than jansson's objects,
 * text and copies of it)
 */
ngx_int_t
ngx_do_store_json_key(ngx_do_turn_t *t, ngx_str_t *key, ngx_str_t *rest,
    uint64_t etag)
{
    u_char  *p;
    size_t   len;

    len = sizeof("{\"key\":") - 1 + ngx_do_store_json_len(key) + rest->len;

    p = ngx_do_reply_buf(t, NGX_HTTP_OK, "application/json", len, etag);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, "{\"key\":", sizeof("{\"key\":") - 1);
    p = ngx_do_store_json_write(p, key);
    (void) ngx_cpymem(p, rest->data, rest->len);

    return NGX_OK;
}


/* the length of an item of a listing, as ngx_do_store_json_list() writes */
static size_t
ngx_do_store_json_item_len(ngx_do_kv_t *kv)
{
    u_char  version[NGX_INT64_LEN];

    return sizeof("{\"key\":,\"value\":,\"version\":}") - 1
           + ngx_do_store_json_len(&kv->key)
           + ngx_do_store_json_len(&kv->value)
           + (ngx_sprintf(version, "%uL", kv->version) - version);
}


/* the length of the bytes as ngx_do_store_json_write() writes them */
static size_t
ngx_do_store_json_len(ngx_str_t *s)
{
    size_t  len;

    len = ngx_do_store_json_string_len(s);

    if (len) {
        return len;
    }

    return sizeof("{\"base64\":\"\"}") - 1 + ngx_base64_encoded_length(s->len);
}


/* writes the bytes as a JSON string or {"base64": "..."}; returns the end */
static u_char *
ngx_do_store_json_write(u_char *p, ngx_str_t *s)
{
    u_char      c, *src, *last;
    ngx_str_t   enc;

    static u_char  hex[] = "0123456789ABCDEF";

    if (ngx_do_store_json_string_len(s) == 0) {
        p = ngx_cpymem(p, "{\"base64\":\"", sizeof("{\"base64\":\"") - 1);

        enc.data = p;
        ngx_encode_base64(&enc, s);
        p += enc.len;

        return ngx_cpymem(p, "\"}", 2);
    }

    *p++ = '"';

    for (src = s->data, last = src + s->len; src < last; src++) {
        c = *src;

        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = c;
            continue;
        }

        *p++ = '\\';

        if (c >= 0x20) {
            *p++ = c;

        } else if (ngx_do_store_json_short[c]) {
            *p++ = ngx_do_store_json_short[c];

        } else {
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
    }

    *p++ = '"';

    return p;
}


/* the length of the bytes as a JSON string with its quotes; 0: not UTF-8 */
static size_t
ngx_do_store_json_string_len(ngx_str_t *s)
{
    u_char  c, *p, *last;
    size_t  len, n;

    len = 2;
    p = s->data;
    last = p + s->len;

    while (p < last) {
        c = *p;

        if (c >= 0x80) {
            n = ngx_do_store_json_utf8(p, last);

            if (n == 0) {
                return 0;
            }

            len += n;
            p += n;
            continue;
        }

        if (c == '"' || c == '\\') {
            len += 2;

        } else if (c < 0x20) {
            len += ngx_do_store_json_short[c] ? 2 : 6;

        } else {
            len++;
        }

        p++;
    }

    return len;
}


/*
 * The length of the multi-byte UTF-8 sequence at p, 0 when it is not
 * one: no overlong forms, no surrogates, nothing above U+10FFFF
 */
static size_t
ngx_do_store_json_utf8(u_char *p, u_char *last)
{
    u_char    c;
    size_t    n, i;
    uint32_t  v;

    c = *p;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }

        v = (v << 6) | (p[i] & 0x3f);
    }

    if (v > 0x10ffff
        || (v >= 0xd800 && v <= 0xdfff)
        || (n == 3 && v < 0x800)
        || (n == 4 && v < 0x10000))
    {
        return 0;
    }

    return n;
}


/*
 * NULL, or why a batch is refused before it is parsed: a batch is one
 * object of at most three members, each an array or an object of at most
 * NGX_DO_MAX_BATCH entries of strings, so nothing nests deeper than two.
 * Only separators outside strings are counted; the syntax is
 * json_loadb()'s to check, within these bounds.
 */
const char *
ngx_do_store_json_batch_scan(ngx_str_t *body)
{
    u_char      c, *p, *last;
    ngx_uint_t  depth, members, entries, string, escape;

    depth = 0;
    members = 0;
    entries = 0;
    string = 0;
    escape = 0;

    for (p = body->data, last = p + body->len; p < last; p++) {
        c = *p;

        if (string) {
            if (escape) {
                escape = 0;

            } else if (c == '\\') {
                escape = 1;

            } else if (c == '"') {
                string = 0;
            }

            continue;
        }

        switch (c) {

        case '"':
            string = 1;
            break;

        case '[':
            if (depth == 0) {
                return NGX_DO_STORE_NOT_OBJECT;
            }

            /* fall through */

        case '{':
            if (depth == 2) {
                return NGX_DO_STORE_BAD_BATCH;
            }

            depth++;
            entries = 0;
            break;

        case ']':
        case '}':
            if (depth <= 1) {
                /* the batch's end, or bad JSON: json_loadb() tells */
                return NULL;
            }

            depth--;
            break;

        case ',':
            if (depth == 1 && ++members == 3) {
                return NGX_DO_STORE_BAD_MEMBER;
            }

            if (depth == 2 && ++entries == NGX_DO_MAX_BATCH) {
                return NGX_DO_STORE_BAD_BATCH;
            }

            break;

        default:
            break;
        }
    }

    return NULL;
}
