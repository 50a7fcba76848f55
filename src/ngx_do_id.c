
/*
 * Object IDs: 16 bytes of body and a 16-byte tag,
 * tag = HMAC-SHA256(secret, namespace || body) truncated, shown as 64 hex.
 * An ID that was not minted for a namespace fails the tag check before any
 * routing or storage work, so IDs cannot be forged or moved between
 * namespaces.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ngx_do.h"


static void ngx_do_id_mac(const char *label, ngx_do_namespace_t *ns,
    u_char *data, size_t len, u_char *out);


/*
 * HMAC over label || len(ns) || ns || data, so that the name and tag
 * domains, and namespaces whose names prefix each other, never collide.
 */
static void
ngx_do_id_mac(const char *label, ngx_do_namespace_t *ns, u_char *data,
    size_t len, u_char *out)
{
    u_char        *p, stack[512], *msg;
    size_t         size;
    unsigned int   mlen;
    u_char         md[EVP_MAX_MD_SIZE];

    size = 4 + 4 + ns->name.len + len;
    msg = size <= sizeof(stack) ? stack : ngx_alloc(size, ngx_cycle->log);

    if (msg == NULL) {
        /* cannot happen with IDs and names bounded by the shell */
        ngx_memzero(out, NGX_DO_BODY_LEN);
        return;
    }

    p = ngx_cpymem(msg, label, 4);
    *p++ = (u_char) (ns->name.len >> 24);
    *p++ = (u_char) (ns->name.len >> 16);
    *p++ = (u_char) (ns->name.len >> 8);
    *p++ = (u_char) ns->name.len;
    p = ngx_cpymem(p, ns->name.data, ns->name.len);
    ngx_memcpy(p, data, len);

    mlen = 0;
    HMAC(EVP_sha256(), ngx_do_runtime.secret, sizeof(ngx_do_runtime.secret),
         msg, size, md, &mlen);

    ngx_memcpy(out, md, NGX_DO_BODY_LEN);

    if (msg != stack) {
        ngx_free(msg);
    }
}


void
ngx_do_id_from_name(ngx_do_namespace_t *ns, ngx_str_t *name, u_char *id)
{
    ngx_do_id_mac("name", ns, name->data, name->len, id);
    ngx_do_id_mac("tag:", ns, id, NGX_DO_BODY_LEN, id + NGX_DO_BODY_LEN);
}


ngx_int_t
ngx_do_id_unique(ngx_do_namespace_t *ns, u_char *id)
{
    if (RAND_bytes(id, NGX_DO_BODY_LEN) != 1) {
        return NGX_ERROR;
    }

    ngx_do_id_mac("tag:", ns, id, NGX_DO_BODY_LEN, id + NGX_DO_BODY_LEN);

    return NGX_OK;
}


/* NGX_OK, or NGX_DECLINED for a malformed ID or one of another namespace */
ngx_int_t
ngx_do_id_from_string(ngx_do_namespace_t *ns, ngx_str_t *hex, u_char *id)
{
    u_char      c, tag[NGX_DO_TAG_LEN];
    ngx_int_t   v;
    ngx_uint_t  i;

    if (hex->len != NGX_DO_ID_HEX_LEN) {
        return NGX_DECLINED;
    }

    for (i = 0; i < NGX_DO_ID_HEX_LEN; i++) {
        c = hex->data[i];

        if (c >= '0' && c <= '9') {
            v = c - '0';

        } else if (c >= 'a' && c <= 'f') {
            v = c - 'a' + 10;

        } else {
            return NGX_DECLINED;
        }

        if (i % 2 == 0) {
            id[i / 2] = (u_char) (v << 4);

        } else {
            id[i / 2] |= (u_char) v;
        }
    }

    ngx_do_id_mac("tag:", ns, id, NGX_DO_BODY_LEN, tag);

    if (CRYPTO_memcmp(tag, id + NGX_DO_BODY_LEN, NGX_DO_TAG_LEN) != 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the owner worker: shard = first 32 bits of the body mod 1024 */
ngx_uint_t
ngx_do_id_owner(u_char *id)
{
    uint32_t  h;

    h = ((uint32_t) id[0] << 24) | ((uint32_t) id[1] << 16)
        | ((uint32_t) id[2] << 8) | id[3];

    return (h % NGX_DO_SHARDS) % ngx_do_runtime.workers;
}


void
ngx_do_id_rbtree_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t  **p;
    ngx_do_id_node_t    *n, *t;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            n = (ngx_do_id_node_t *) node;
            t = (ngx_do_id_node_t *) temp;

            p = (ngx_memcmp(n->id, t->id, NGX_DO_ID_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


ngx_do_id_node_t *
ngx_do_id_rbtree_lookup(ngx_rbtree_t *tree, u_char *id)
{
    uint32_t            hash;
    ngx_int_t           rc;
    ngx_do_id_node_t   *n;
    ngx_rbtree_node_t  *node;

    hash = ngx_crc32_short(id, NGX_DO_ID_LEN);
    node = tree->root;

    while (node != tree->sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        n = (ngx_do_id_node_t *) node;
        rc = ngx_memcmp(id, n->id, NGX_DO_ID_LEN);

        if (rc == 0) {
            return n;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}
