
/*
 * Object IDs: 16 bytes of body and a 16-byte tag,
 * tag = HMAC-SHA256(secret, namespace || body) truncated, shown as 64 hex.
 * An ID that was not minted for a namespace fails the tag check before any
 * routing or storage work, so IDs cannot be forged or moved between
 * namespaces.  The secret files read at configuration (do_secret, and
 * Redis's password_file=) are read here too.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_do.h"


/* a power of two */
#define NGX_DO_ID_CACHE_SIZE      256
#define NGX_DO_ID_CACHE_NAME      63


/*
 * Names met lately and their IDs, per worker.  An ID from a name costs two
 * HMACs, the same names mostly come again (a hot object is called by name
 * on every request), and the answer is a pure function of the namespace
 * and the name while the secret stays (the cache is emptied with each
 * ngx_do_id_init()).  Direct mapped by a hash of both; a name longer than
 * NGX_DO_ID_CACHE_NAME is not kept.  Names that collide only evict each
 * other: the ID is always that of the name compared byte for byte.
 */
typedef struct {
    ngx_do_namespace_t        *ns;           /* NULL: an empty slot */
    u_char                     id[NGX_DO_ID_LEN];
    u_char                     len;
    u_char                     name[NGX_DO_ID_CACHE_NAME];
} ngx_do_id_cached_t;


static void ngx_do_id_mac(const char *label, ngx_do_namespace_t *ns,
    u_char *data, size_t len, u_char *out);


static ngx_do_id_cached_t  ngx_do_id_cache[NGX_DO_ID_CACHE_SIZE];


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

    ngx_memzero(ngx_do_id_cache, sizeof(ngx_do_id_cache));
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
    uint32_t             h;
    ngx_uint_t           i;
    ngx_do_id_cached_t  *c;

    if (name->len > NGX_DO_ID_CACHE_NAME) {
        ngx_do_id_mac("name", ns, name->data, name->len, id);
        ngx_do_id_mac("tag:", ns, id, NGX_DO_BODY_LEN, id + NGX_DO_BODY_LEN);
        return;
    }

    h = (uint32_t) ns->index * 0x9e3779b1;

    for (i = 0; i < name->len; i++) {
        h = (h ^ name->data[i]) * 0x01000193;
    }

    c = &ngx_do_id_cache[(h ^ (h >> 16)) & (NGX_DO_ID_CACHE_SIZE - 1)];

    if (c->ns == ns && c->len == name->len
        && ngx_memcmp(c->name, name->data, name->len) == 0)
    {
        ngx_memcpy(id, c->id, NGX_DO_ID_LEN);
        return;
    }

    ngx_do_id_mac("name", ns, name->data, name->len, id);
    ngx_do_id_mac("tag:", ns, id, NGX_DO_BODY_LEN, id + NGX_DO_BODY_LEN);

    c->ns = ns;
    c->len = (u_char) name->len;
    ngx_memcpy(c->name, name->data, name->len);
    ngx_memcpy(c->id, id, NGX_DO_ID_LEN);
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
 * The key of an ID in a tree: 32 bits of its body.  An ID's body is an
 * HMAC output or random bytes (an ID given as a string is one of those,
 * or its tag fails), so its bits are as good as any hash of them, and
 * cost nothing to compute.
 */
uint32_t
ngx_do_id_hash(u_char *id)
{
    return ((uint32_t) id[4] << 24) | ((uint32_t) id[5] << 16)
           | ((uint32_t) id[6] << 8) | id[7];
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

    hash = ngx_do_id_hash(id);
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


/*
 * A secret file read at configuration (do_secret, password_file=): at
 * most size bytes into buf, so that a caller that passes one byte more
 * than it takes can tell a file that is too long; -1 when it cannot be
 * opened or read (logged, with file and line).  The content is never
 * logged.
 */
ssize_t
ngx_do_id_read_secret(ngx_conf_t *cf, ngx_str_t *file, u_char *buf,
    size_t size)
{
    ssize_t   n;
    ngx_fd_t  fd;

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", file);
        return -1;
    }

    n = ngx_read_fd(fd, buf, size);

    (void) ngx_close_file(fd);

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%V\" failed", file);
    }

    return n;
}
