
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
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_do.h"


static void ngx_do_id_mac(const char *label, ngx_do_namespace_t *ns,
    u_char *data, size_t len, u_char *out);


/*
 * HMAC-SHA256 with the key's inner and outer blocks absorbed once per
 * worker: a MAC is then two SHA-256 finals, with no allocation and no
 * provider lookup (OpenSSL 3's HMAC() does both on every call, a large
 * share of a rate limiter's request).  The SHA256_* functions are
 * deprecated in OpenSSL 3 but plain structs are what makes this cheap.
 */

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

static SHA256_CTX  ngx_do_id_inner;
static SHA256_CTX  ngx_do_id_outer;


void
ngx_do_id_init(u_char *secret)
{
    u_char      ipad[SHA256_CBLOCK], opad[SHA256_CBLOCK];
    ngx_uint_t  i;

    ngx_memzero(ipad, sizeof(ipad));
    ngx_memcpy(ipad, secret, 32);
    ngx_memcpy(opad, ipad, sizeof(ipad));

    for (i = 0; i < SHA256_CBLOCK; i++) {
        ipad[i] ^= 0x36;
        opad[i] ^= 0x5c;
    }

    SHA256_Init(&ngx_do_id_inner);
    SHA256_Update(&ngx_do_id_inner, ipad, sizeof(ipad));
    SHA256_Init(&ngx_do_id_outer);
    SHA256_Update(&ngx_do_id_outer, opad, sizeof(opad));

    ngx_explicit_memzero(ipad, sizeof(ipad));
    ngx_explicit_memzero(opad, sizeof(opad));
}


/*
 * HMAC over label || len(ns) || ns || data, so that the name and tag
 * domains, and namespaces whose names prefix each other, never collide.
 */
static void
ngx_do_id_mac(const char *label, ngx_do_namespace_t *ns, u_char *data,
    size_t len, u_char *out)
{
    u_char      nslen[4], md[SHA256_DIGEST_LENGTH];
    SHA256_CTX  c;

    nslen[0] = (u_char) (ns->name.len >> 24);
    nslen[1] = (u_char) (ns->name.len >> 16);
    nslen[2] = (u_char) (ns->name.len >> 8);
    nslen[3] = (u_char) ns->name.len;

    c = ngx_do_id_inner;
    SHA256_Update(&c, label, 4);
    SHA256_Update(&c, nslen, 4);
    SHA256_Update(&c, ns->name.data, ns->name.len);
    SHA256_Update(&c, data, len);
    SHA256_Final(md, &c);

    c = ngx_do_id_outer;
    SHA256_Update(&c, md, sizeof(md));
    SHA256_Final(md, &c);

    ngx_memcpy(out, md, NGX_DO_BODY_LEN);
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif


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


/* the shard: the first 32 bits of the body mod 1024 */
ngx_uint_t
ngx_do_id_shard(u_char *id)
{
    uint32_t  h;

    h = ((uint32_t) id[0] << 24) | ((uint32_t) id[1] << 16)
        | ((uint32_t) id[2] << 8) | id[3];

    return h % NGX_DO_SHARDS;
}


/* the owner worker of the object's shard */
ngx_uint_t
ngx_do_id_owner(u_char *id)
{
    return ngx_do_shard_owner(ngx_do_id_shard(id));
}


/*
 * ngx_str_rbtree_insert_value() for a key of fixed length kept in the node
 * itself: the memory backend keeps these nodes in shared memory, where an
 * ngx_str_t per object would cost 16 bytes and a pointer to itself.
 */
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
