
/*
 * A witness for t/49-logs-secrets.t, loaded into nginx with LD_PRELOAD:
 * every getaddrinfo() call appends "<pid> <node>" to the file that
 * DO_GAI_LOG named when nginx started, then runs the real one.  The path
 * is read at load time, in the master: nginx clears the environment of
 * its workers, which inherit the path with the rest of its memory.
 */

#define _GNU_SOURCE

#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


typedef int (*gai_pt)(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res);

static char  spy_log[4096];


__attribute__((constructor))
static void
spy_init(void)
{
    const char  *path;

    path = getenv("DO_GAI_LOG");

    if (path != NULL && strlen(path) < sizeof(spy_log)) {
        strcpy(spy_log, path);
    }
}


int
getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
    FILE           *f;
    static gai_pt   real;

    if (real == NULL) {
        real = (gai_pt) dlsym(RTLD_NEXT, "getaddrinfo");
    }

    if (spy_log[0] && (f = fopen(spy_log, "a")) != NULL) {
        fprintf(f, "%d %s\n", (int) getpid(), node ? node : "-");
        fclose(f);
    }

    return real(node, service, hints, res);
}
