/* A minimal TAP producer for the C unit tests run by prove. */

#ifndef _TAP_H_INCLUDED_
#define _TAP_H_INCLUDED_

#include <stdio.h>
#include <string.h>

static int  tap_n, tap_failed;

#define ok(cond, ...)                                                        \
    do {                                                                     \
        int  ok_ = (cond) ? 1 : 0;                                           \
        printf("%sok %d - ", ok_ ? "" : "not ", ++tap_n);                    \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
        if (!ok_) {                                                          \
            tap_failed++;                                                    \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__);        \
        }                                                                    \
    } while (0)

#define is_int(got, want, ...)                                               \
    do {                                                                     \
        long long  g_ = (long long) (got), w_ = (long long) (want);          \
        ok(g_ == w_, __VA_ARGS__);                                           \
        if (g_ != w_) {                                                      \
            printf("#   got %lld, want %lld\n", g_, w_);                     \
        }                                                                    \
    } while (0)

#define is_str(got, got_len, want, ...)                                      \
    do {                                                                     \
        size_t  gl_ = (got_len);                                             \
        int     eq_ = gl_ == strlen(want)                                    \
                      && memcmp((got), (want), gl_) == 0;                    \
        ok(eq_, __VA_ARGS__);                                                \
        if (!eq_) {                                                          \
            printf("#   got  '%.*s'\n#   want '%s'\n", (int) gl_,            \
                   (const char *) (got), (want));                            \
        }                                                                    \
    } while (0)

static int
done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
