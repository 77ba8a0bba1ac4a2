# nginx-imburse-auth: build, test, package and demo.
#
#   make                      build/ngx_http_imburse_auth_module.so against
#                             Debian's nginx (nginx-dev, /usr/share/nginx/src)
#   make NGINX_SRC=PATH       the same against the nginx source PATH, a
#                             tarball or a tree, nginx 1.22 or later
#   make test                 the suite (T=files for some) against Debian's
#                             nginx, or with NGINX_SRC against that nginx,
#                             built here; the module loaded dynamically
#   make test-short NGINX_SRC=PATH      the suite's SHORT_TESTS only
#   make deb, make test-deb   the Debian package (scripts/deb/)
#
# Each source builds in its own directory, build/nginx-dev or
# build/nginx-VERSION-HASH (HASH: of the source's path), kept between runs:
# only what changed is rebuilt.

SHELL      := /bin/bash
BUILD      := build
MODULE     := $(BUILD)/ngx_http_imburse_auth_module.so
SOURCES    := config $(wildcard src/*.c src/*.h)
UNIT_BINS  := $(BUILD)/unit/hmac $(BUILD)/unit/token $(BUILD)/unit/fleet \
              $(BUILD)/unit/errbody
PURE_SRCS  := src/ngx_imburse_hmac.c src/ngx_imburse_token.c \
              src/ngx_imburse_resp.c src/ngx_imburse_fleet_crypto.c \
              src/ngx_imburse_errbody.c
CFLAGS_UNIT = -O1 -g -Wall -Wextra -Werror -Isrc
JOBS       ?= $(shell nproc)

# make test-short: what runs against every other nginx version in CI
SHORT_TESTS := t/01-harness.t t/02-build.t t/10-exchange.t \
               t/11-concurrency.t t/12-reload.t t/19-cross-worker-wake.t \
               t/42-upstream-401.t

# The module against a given source: what every distribution's and
# nginx.org's nginx has (--with-compat makes the .so load into any binary
# of that version built --with-compat), and --with-debug, as Debian's
# nginx-dev has, so that the module's debug log exists where nginx has one.
MODULE_FLAGS := --with-compat --with-debug --with-threads \
                --with-http_ssl_module --with-http_v2_module

# Compiled as Debian's module packages are (its dpkg-buildflags, with
# hardening=+all): -O2 and _FORTIFY_SOURCE find what nginx's default -O
# does not (an unchecked write(), say), and nginx adds -Werror.
MODULE_CC_OPT ?= -g -O2 -fstack-protector-strong -Wformat \
                 -Werror=format-security -D_FORTIFY_SOURCE=2
MODULE_LD_OPT ?= -Wl,-z,relro -Wl,-z,now
MODULE_OPT    := --with-cc-opt='$(MODULE_CC_OPT)' --with-ld-opt='$(MODULE_LD_OPT)'

# The nginx that make test NGINX_SRC=... runs: the modules the suite uses,
# nginx's own default paths (the harness must not need any).
SERVER_FLAGS := --with-compat --with-debug --with-threads --with-pcre-jit \
                --with-http_ssl_module --with-http_v2_module \
                --with-http_realip_module --with-http_addition_module \
                --with-http_auth_request_module --with-http_slice_module \
                --with-http_sub_module --with-http_stub_status_module \
                --with-http_dav_module --with-http_gunzip_module \
                --with-http_gzip_static_module --with-http_secure_link_module

# $(call stamp,FILE,TEXT) is FILE, holding TEXT, rewritten only when TEXT
# changes: a prerequisite that makes a target depend on a value.
stamp = $(shell f='$(1)'; t='$(2)'; mkdir -p "$${f%/*}"; \
    [ "$$(cat "$$f" 2>/dev/null)" = "$$t" ] || printf '%s\n' "$$t" >"$$f")$(1)

DEBIAN_SRC := /usr/share/nginx/src

ifeq ($(NGINX_SRC),)
NGX        := $(BUILD)/nginx-dev
NGX_ORIGIN := $(DEBIAN_SRC)/src/core/nginx.h $(DEBIAN_SRC)/conf_flags
# Debian's configure flags, as its own module packages use
MOD_CONFIGURE = . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" $(MODULE_OPT)
DEPS_BUILD := build nginx-dev
DEPS_TEST  := test nginx
else
NGX_PATH   := $(abspath $(NGINX_SRC))
NGX_DIR    := $(wildcard $(NGX_PATH)/src/core/nginx.h)
NGX_VERSION := $(shell { cat '$(NGX_PATH)/src/core/nginx.h' \
    || tar -xOf '$(NGX_PATH)' --wildcards '*/src/core/nginx.h'; } 2>/dev/null \
    | sed -n 's/^\#define NGINX_VERSION *"\(.*\)"/\1/p')
$(if $(NGX_VERSION),,$(error NGINX_SRC=$(NGINX_SRC) is no nginx source \
    (no src/core/nginx.h with NGINX_VERSION)))
NGX        := $(BUILD)/nginx-$(NGX_VERSION)-$(shell printf %s '$(NGX_PATH)' \
                  | sha256sum | cut -c1-8)
NGX_ORIGIN := $(or $(NGX_DIR),$(NGX_PATH))
MOD_CONFIGURE = $(CONFIGURE) $(MODULE_FLAGS) $(MODULE_OPT)
DEPS_BUILD := build
DEPS_TEST  := test
NGINX_TEST := $(NGX)/sbin/nginx
endif

NGX_TREE   := $(NGX)/src
MOD_OBJS   := $(NGX)/module
SRV_OBJS   := $(NGX)/server
# release tarballs have ./configure, tarballs of nginx's repository tags
# only auto/configure
CONFIGURE   = sh $$([ -f configure ] && echo configure || echo auto/configure)

.PHONY: all test test-short unit demo bench deb test-deb deps \
        test-asan test-valgrind fuzz clean

all: $(MODULE)

$(DEBIAN_SRC)/src/core/nginx.h $(DEBIAN_SRC)/conf_flags:
	@scripts/install-deps $(DEPS_BUILD)

# a private copy: configure writes into the tree
$(NGX_TREE)/.copied: $(NGX_ORIGIN)
	rm -rf $(NGX_TREE)
	mkdir -p $(NGX_TREE)
	if [ -d '$(or $(NGX_PATH),$(DEBIAN_SRC))' ]; then \
	    cp -a '$(or $(NGX_PATH),$(DEBIAN_SRC))/.' $(NGX_TREE)/; \
	else \
	    tar -xf '$(NGX_PATH)' -C $(NGX_TREE) --strip-components=1; \
	fi
	touch $@

$(MOD_OBJS)/Makefile: $(NGX_TREE)/.copied config \
                      $(call stamp,$(NGX)/module.flags,$(MODULE_FLAGS) $(MODULE_CC_OPT) $(MODULE_LD_OPT))
	@scripts/install-deps $(DEPS_BUILD)
	rm -rf $(MOD_OBJS)
	cd $(NGX_TREE) && $(MOD_CONFIGURE) --builddir=$(CURDIR)/$(MOD_OBJS) \
	    --add-dynamic-module=$(CURDIR) >$(CURDIR)/$(NGX)/module-configure.log \
	    2>&1 || { tail -20 $(CURDIR)/$(NGX)/module-configure.log; \
	              rm -f $(CURDIR)/$@; exit 1; }

$(MOD_OBJS)/ngx_http_imburse_auth_module.so: $(MOD_OBJS)/Makefile $(SOURCES)
	$(MAKE) -C $(NGX_TREE) -f $(CURDIR)/$(MOD_OBJS)/Makefile modules

# the one the README, the harness and make demo use: the last one built
$(MODULE): $(MOD_OBJS)/ngx_http_imburse_auth_module.so \
           $(call stamp,$(BUILD)/module.from,$(NGX))
	cp $< $@.tmp && mv -f $@.tmp $@

ifdef NGINX_TEST
$(SRV_OBJS)/Makefile: $(NGX_TREE)/.copied \
                      $(call stamp,$(NGX)/server.flags,$(SERVER_FLAGS))
	@test -f $(NGX_TREE)/src/core/nginx.c || { echo "$(NGINX_SRC) has" \
	    "nginx's headers only: make test needs its whole source" >&2; exit 1; }
	@scripts/install-deps $(DEPS_BUILD)
	rm -rf $(SRV_OBJS)
	cd $(NGX_TREE) && $(CONFIGURE) $(SERVER_FLAGS) \
	    --builddir=$(CURDIR)/$(SRV_OBJS) >$(CURDIR)/$(NGX)/server-configure.log \
	    2>&1 || { tail -20 $(CURDIR)/$(NGX)/server-configure.log; \
	              rm -f $(CURDIR)/$@; exit 1; }

$(NGX)/sbin/nginx: $(SRV_OBJS)/Makefile
	@echo "building nginx $(NGX_VERSION) in $(SRV_OBJS) (make.log)"
	$(MAKE) -C $(NGX_TREE) -f $(CURDIR)/$(SRV_OBJS)/Makefile -j$(JOBS) \
	    >$(SRV_OBJS)/make.log 2>&1 || { tail -30 $(SRV_OBJS)/make.log; exit 1; }
	mkdir -p $(@D)
	cp $(SRV_OBJS)/nginx $@.tmp && mv -f $@.tmp $@
endif

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(PURE_SRCS) src/*.h
	@scripts/install-deps build
	@mkdir -p $(BUILD)/unit
	$(CC) $(CFLAGS_UNIT) -o $@ $< $(PURE_SRCS) -lcjson -lcrypto -lm

unit: $(UNIT_BINS)

test:
	@scripts/install-deps $(DEPS_TEST)
	@$(MAKE) --no-print-directory $(MODULE) unit $(NGINX_TEST)
	IMBURSE_MODULE=$(CURDIR)/$(MOD_OBJS)/ngx_http_imburse_auth_module.so \
	    $(if $(NGINX_TEST),NGINX_BIN=$(CURDIR)/$(NGINX_TEST)) \
	    prove -I t/lib $(or $(T),-r t/)

test-short:
	@$(MAKE) --no-print-directory test T="$(SHORT_TESTS)"

# the Debian package, built with debhelper and nginx-dev's nginx_mod, in
# build/deb; make test-deb installs, checks and purges it
deb:
	scripts/deb/build

test-deb:
	scripts/deb/test

deps:
	@scripts/install-deps

demo:
	@scripts/install-deps test nginx
	@$(MAKE) --no-print-directory $(MODULE)
	@perl demo/demo.pl

bench: deps $(MODULE)
	bench/run

# the suite (or the files given in T=...) against nginx and the module built
# with ASan + UBSan (+ LSan)
test-asan: deps
	scripts/asan/test $(T)

# the suite (or the files given in T=...) with nginx under valgrind memcheck
test-valgrind: deps
	scripts/asan/valgrind-test $(T)

# each libFuzzer target for FUZZ_SECONDS (default 60)
fuzz: deps
	fuzz/run

clean:
	rm -rf $(BUILD)
