# nginx-imburse-auth: build, test and demo.
# `make` builds build/ngx_http_imburse_auth_module.so against Debian's nginx.

SHELL      := /bin/bash
NGINX_SRC  ?= /usr/share/nginx/src
BUILD      := build
MODULE     := $(BUILD)/ngx_http_imburse_auth_module.so
SOURCES    := config $(wildcard src/*.c src/*.h)
UNIT_BINS  := $(BUILD)/unit/hmac $(BUILD)/unit/token $(BUILD)/unit/fleet \
              $(BUILD)/unit/errbody
PURE_SRCS  := src/ngx_imburse_hmac.c src/ngx_imburse_token.c \
              src/ngx_imburse_resp.c src/ngx_imburse_fleet_crypto.c \
              src/ngx_imburse_errbody.c
CFLAGS_UNIT = -O1 -g -Wall -Wextra -Werror -Isrc

.PHONY: all deps test unit demo bench test-asan test-valgrind fuzz clean

all: $(MODULE)

deps:
	@scripts/install-deps

$(BUILD)/nginx/Makefile: config | deps
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && . ./conf_flags \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	       > configure.log || { tail -20 configure.log; exit 1; }

$(MODULE): $(BUILD)/nginx/Makefile $(SOURCES)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_http_imburse_auth_module.so $@.tmp && mv -f $@.tmp $@

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(PURE_SRCS) src/*.h | deps
	@mkdir -p $(BUILD)/unit
	$(CC) $(CFLAGS_UNIT) -o $@ $< $(PURE_SRCS) -lcjson -lcrypto -lm

unit: $(UNIT_BINS)

test: deps $(MODULE) unit
	prove -I t/lib -r t/

demo: deps $(MODULE)
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
