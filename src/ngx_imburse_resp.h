/*
 * A parser of Redis replies (RESP2) for the fleet tier.  Pure C: no nginx
 * types, so it is unit-tested and fuzzed directly.
 */

#ifndef _NGX_IMBURSE_RESP_H_INCLUDED_
#define _NGX_IMBURSE_RESP_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


typedef enum {
    IMBURSE_RESP_STATUS = 0,     /* +OK */
    IMBURSE_RESP_ERROR,          /* -ERR ... */
    IMBURSE_RESP_INTEGER,        /* :1 */
    IMBURSE_RESP_BULK,           /* $3 abc */
    IMBURSE_RESP_NIL             /* $-1 or *-1 */
} imburse_resp_type_t;


typedef struct {
    imburse_resp_type_t   type;
    /* STATUS, ERROR and BULK: points into the parsed buffer */
    const unsigned char  *data;
    size_t                len;
    int64_t               integer;
} imburse_resp_t;


/* the largest bulk reply accepted: an encrypted token is far smaller */
#define IMBURSE_RESP_BULK_MAX  65536

/*
 * Parses one reply from buf.  Returns the bytes it took, 0 when buf holds
 * only part of a reply, -1 when buf is not RESP (or holds an array, which
 * no command of ours answers with), or IMBURSE_RESP_TOO_BIG for a bulk
 * reply over IMBURSE_RESP_BULK_MAX.
 */
#define IMBURSE_RESP_TOO_BIG  -2

long imburse_resp_parse(const unsigned char *buf, size_t len,
    imburse_resp_t *reply);


#endif /* _NGX_IMBURSE_RESP_H_INCLUDED_ */
