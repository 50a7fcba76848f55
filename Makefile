# ngx_do: build the module against Debian's nginx, run it, test it.
#
#   make run        install what is missing, build, start the quickstart
#   make test       install what is missing, build, run every test
#   make test-asan  the same suite against an ASan/UBSan build of the module
#   make test-valgrind  the memory-path tests under valgrind's memcheck
#   make fuzz       build the libFuzzer targets (fuzz/) with clang
#   make fuzz-run   run each for FUZZ_SECONDS (60) on its seed corpus
#   make static NGINX_SRC=/path/to/nginx   build nginx with the module inside
#   make test-static  that, from Debian's nginx source package, and tests
#   make lint       cppcheck
#   make install    the module in Debian's layout (DESTDIR= to stage it)
#   make deb        a Debian package of it, in build/

SHELL      := /bin/bash
NGINX      ?= /usr/sbin/nginx
NGX_DEV    := /usr/share/nginx/src
BUILD      := build
MODULE     := $(BUILD)/ngx_http_do_module.so
ASAN_BUILD := build-asan
ASAN_MOD   := $(ASAN_BUILD)/ngx_http_do_module.so
CC_OPT     := -g -O2 -fPIC -Wall -Wextra -Werror -Wno-unused-parameter
ASAN_OPT   := -g -O1 -fPIC -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined -Wall -Wextra -Werror \
              -Wno-unused-parameter
SRCS       := config $(wildcard *.c src/*.c src/*.h src/classes/*.c src/classes/*.h)
PROVE_J    ?= 2

# the C unit tests of the pure RFC 6455 code, run by t/40-ws-proto.t
WS_TEST      := $(BUILD)/ws-proto-test
WS_TEST_ASAN := $(ASAN_BUILD)/ws-proto-test
WS_TEST_SRCS := t/c/ws_proto_test.c src/ngx_do_ws_proto.c \
                src/ngx_do_ws_proto.h
TEST_OPT     := -g -O2 -Wall -Wextra -Werror -I src
TEST_ASAN    := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -Wall -Wextra -Werror -I src

FUZZ_PKGS    := clang libclang-rt-14-dev
FUZZ_BUILD   := build-fuzz
FUZZ_TARGETS := ws_frame_fuzz ws_handshake_fuzz
FUZZ_BINS    := $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS))
FUZZ_OPT     := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -Wall -Wextra -Werror -I src
FUZZ_SECONDS ?= 60

DEB_PKGS   := nginx nginx-dev libhiredis-dev libjansson-dev libssl-dev \
              libpcre2-dev zlib1g-dev redis-server wrk perl gcc make curl \
              valgrind chromium chromium-driver python3-selenium \
              libio-socket-ssl-perl openssl

.PHONY: all deps build run test test-asan test-valgrind static test-static \
        lint clean fuzz fuzz-deps fuzz-run install uninstall deb

all: build

# $(1): Debian packages only; apt-get update once, then install what is
# missing.
define install_missing
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PKGS))

build: $(MODULE)

# $(1): build directory, $(2): compiler options
define configure_module
	rm -rf $(1)/nginx && mkdir -p $(1) && cp -r $(NGX_DEV) $(1)/nginx
	cd $(1)/nginx && source ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --with-cc-opt="$(2)" \
	        --add-dynamic-module=$(CURDIR) > ../configure.log 2>&1 \
	    || { cat ../configure.log; exit 1; }
endef

$(BUILD)/nginx/objs/Makefile: config
	@test -d $(NGX_DEV) || { echo "nginx-dev is missing: run 'make deps'"; exit 1; }
	$(call configure_module,$(BUILD),$(CC_OPT))

$(MODULE): $(SRCS) $(BUILD)/nginx/objs/Makefile
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_http_do_module.so $@

$(ASAN_BUILD)/nginx/objs/Makefile: config
	$(call configure_module,$(ASAN_BUILD),$(ASAN_OPT))

$(ASAN_MOD): $(SRCS) $(ASAN_BUILD)/nginx/objs/Makefile
	$(MAKE) -C $(ASAN_BUILD)/nginx -f objs/Makefile modules
	cp $(ASAN_BUILD)/nginx/objs/ngx_http_do_module.so $@

run: deps build
	@bin/quickstart $(NGINX) $(CURDIR)/$(MODULE)

$(WS_TEST): $(WS_TEST_SRCS)
	@mkdir -p $(@D)
	$(CC) $(TEST_OPT) -o $@ t/c/ws_proto_test.c src/ngx_do_ws_proto.c -lcrypto

$(WS_TEST_ASAN): $(WS_TEST_SRCS)
	@mkdir -p $(@D)
	$(CC) $(TEST_ASAN) -o $@ t/c/ws_proto_test.c src/ngx_do_ws_proto.c \
	    -lcrypto

test: deps build $(WS_TEST)
	DO_MODULE=$(CURDIR)/$(MODULE) NGINX_BIN=$(NGINX) \
	    DO_WS_TEST=$(CURDIR)/$(WS_TEST) prove -j$(PROVE_J) -r t/

# Debian's nginx with the ASan runtime preloaded and the module built with
# -fsanitize=address,undefined; any report fails the run (t/lib/DoTest.pm
# checks the sanitizer logs after each test).
test-asan: deps $(ASAN_MOD) $(WS_TEST_ASAN)
	DO_MODULE=$(CURDIR)/$(ASAN_MOD) NGINX_BIN=$(NGINX) DO_ASAN=1 \
	    DO_WS_TEST=$(CURDIR)/$(WS_TEST_ASAN) prove -j1 -r t/

# Memcheck over the tests that carry bodies, IDs and gates and do not race
# the clock (valgrind slows nginx 20-fold); any memcheck error whose stack
# passes through the module fails the test (t/lib/DoTest.pm).
VALGRIND_T := t/02-ids.t t/03-store.t t/04-owners.t t/05-exactness.t \
              t/06-eviction.t t/08-memory-safety.t t/10-rate-limit.t \
              t/13-store-redis.t

test-valgrind: deps build
	DO_MODULE=$(CURDIR)/$(MODULE) NGINX_BIN=$(NGINX) DO_VALGRIND=1 \
	    prove -j$(PROVE_J) $(VALGRIND_T)

fuzz-deps:
	$(call install_missing,$(FUZZ_PKGS))

# libFuzzer targets, with Debian's clang
fuzz: fuzz-deps $(FUZZ_BINS)

$(FUZZ_BUILD)/%: fuzz/%.c src/ngx_do_ws_proto.c src/ngx_do_ws_proto.h
	@mkdir -p $(@D)
	clang $(FUZZ_OPT) -o $@ $< src/ngx_do_ws_proto.c -lcrypto

# Each target for FUZZ_SECONDS on a copy of its seed corpus (the committed
# one stays as it is); a crash, a leak or a sanitizer report fails, and
# the input that caused it is kept in $(FUZZ_BUILD)/crashes/.
fuzz-run: fuzz
	@mkdir -p $(FUZZ_BUILD)/crashes; \
	for t in $(FUZZ_TARGETS); do \
	    corpus=$$(mktemp -d) || exit 1; \
	    cp fuzz/corpus/$$t/* $$corpus/; \
	    echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	    rc=0; \
	    ./$(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) \
	        -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t- $$corpus || rc=$$?; \
	    rm -rf $$corpus; \
	    if [ $$rc -ne 0 ]; then \
	        echo "fuzz: $$t failed, see $(FUZZ_BUILD)/crashes/"; exit 1; \
	    fi; \
	done

# Installed as Debian installs its own dynamic modules (libnginx-mod-*):
# the .so in /usr/lib/nginx/modules, its load_module line in
# modules-available, enabled by a symlink in modules-enabled, which
# Debian's nginx.conf includes.  The examples go with the documentation.
VERSION   := $(shell sed -n 's/^\#define NGX_DO_VERSION *"\(.*\)"/\1/p' \
                 src/ngx_http_do.h)
MODS_DIR  := /usr/lib/nginx/modules
AVAIL_DIR := /usr/share/nginx/modules-available
ENABL_DIR := /etc/nginx/modules-enabled
DOC_DIR   := /usr/share/doc/libnginx-mod-http-do

install: build
	install -D -m 644 $(MODULE) $(DESTDIR)$(MODS_DIR)/ngx_http_do_module.so
	install -D -m 644 packaging/mod-http-do.conf \
	    $(DESTDIR)$(AVAIL_DIR)/mod-http-do.conf
	install -d $(DESTDIR)$(ENABL_DIR)
	ln -sf $(AVAIL_DIR)/mod-http-do.conf \
	    $(DESTDIR)$(ENABL_DIR)/50-mod-http-do.conf
	install -D -m 644 -t $(DESTDIR)$(DOC_DIR) README.md CHANGELOG.md LICENSE
	install -D -m 644 -t $(DESTDIR)$(DOC_DIR)/examples conf-examples/*.conf
	install -D -m 644 -t $(DESTDIR)$(DOC_DIR)/examples/conf.d \
	    conf-examples/conf.d/*.conf
	install -D -m 644 -t $(DESTDIR)$(DOC_DIR)/examples/chat \
	    conf-examples/chat/*

uninstall:
	rm -f $(DESTDIR)$(ENABL_DIR)/50-mod-http-do.conf \
	    $(DESTDIR)$(AVAIL_DIR)/mod-http-do.conf \
	    $(DESTDIR)$(MODS_DIR)/ngx_http_do_module.so
	rm -rf $(DESTDIR)$(DOC_DIR)

deb: build
	rm -rf $(BUILD)/deb-root
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(BUILD))/deb-root
	packaging/mkdeb $(BUILD)/deb-root $(VERSION) $(BUILD)

static:
	@test -n "$(NGINX_SRC)" || { echo "usage: make static NGINX_SRC=/path/to/nginx"; exit 1; }
	cd $(NGINX_SRC) && if [ -x configure ]; then conf=./configure; \
	    else conf=auto/configure; fi && \
	    $$conf --with-http_ssl_module --with-http_auth_request_module \
	        --with-cc-opt="$(CC_OPT)" --add-module=$(CURDIR) \
	    && $(MAKE) -f objs/Makefile

# make static into the upstream source of Debian's nginx package (apt-get
# source, with a sources list of this build's own: the system's apt
# configuration is left alone), then tests of every class, of WebSockets
# and of cluster mode against that nginx, which is built without
# --with-debug (so debug-only code paths are compiled out, as in most
# nginx builds).
STATIC_BUILD := build-static
STATIC_APT   := -o Dir::Etc::SourceList=$(CURDIR)/$(STATIC_BUILD)/apt/sources.list \
                -o Dir::Etc::SourceParts=/dev/null \
                -o Dir::State::Lists=$(CURDIR)/$(STATIC_BUILD)/apt/lists
STATIC_T     := t/01-config.t t/03-store.t t/07-reload.t t/10-rate-limit.t \
                t/13-store-redis.t t/31-lock.t t/36-do-lock-gate.t \
                t/42-room.t t/52-room-auth.t t/61-cluster-limits.t \
                t/72-cluster-leave.t

$(STATIC_BUILD)/nginx/configure:
	rm -rf $(STATIC_BUILD) && mkdir -p $(STATIC_BUILD)/apt/lists/partial
	. /etc/os-release && echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $$VERSION_CODENAME main" \
	    > $(STATIC_BUILD)/apt/sources.list
	apt-get $(STATIC_APT) -qq update
	cd $(STATIC_BUILD) && apt-get $(STATIC_APT) -qq source --download-only nginx
	mkdir $(STATIC_BUILD)/nginx
	tar -xzf $(STATIC_BUILD)/nginx_*.orig.tar.gz -C $(STATIC_BUILD)/nginx \
	    --strip-components=1

test-static: deps $(WS_TEST) $(STATIC_BUILD)/nginx/configure
	$(MAKE) --no-print-directory static NGINX_SRC=$(CURDIR)/$(STATIC_BUILD)/nginx
	DO_STATIC=1 NGINX_BIN=$(CURDIR)/$(STATIC_BUILD)/nginx/objs/nginx \
	    DO_WS_TEST=$(CURDIR)/$(WS_TEST) prove -j$(PROVE_J) $(STATIC_T)

# cppcheck over the module's sources, with nginx's headers
lint: build
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    -I src -I src/classes -I $(BUILD)/nginx/objs \
	    $(addprefix -I $(NGX_DEV)/src/,core event os/unix http) \
	    *.c src/*.c src/classes/*.c

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(STATIC_BUILD)
