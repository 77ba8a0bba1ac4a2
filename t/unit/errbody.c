/*
 * Unit tests of what an identity error body says: Imburse's errorCodes,
 * and the masked excerpt of anything else.
 */

#include <stdlib.h>

#include "ngx_imburse_errbody.h"
#include "tap.h"


static char  out[128];


static size_t
codes(const char *body)
{
    return imburse_error_codes(body, strlen(body), out, sizeof(out));
}


static size_t
excerpt(const char *body, size_t size)
{
    return imburse_error_excerpt(body, strlen(body), out, size);
}


static void
test_codes(void)
{
    size_t  n;

    n = codes("{\"errors\":[{\"errorCode\":\"INVALID_SIGNATURE\","
              "\"message\":\"The HMAC signature is invalid\"}],"
              "\"traceId\":\"abc\"}");
    is_str(out, n, "INVALID_SIGNATURE", "one errorCode");

    n = codes("{\"errors\":[{\"errorCode\":\"A\"},{\"message\":\"m\"},"
              "{\"errorCode\":\"B-2.x\"}]}");
    is_str(out, n, "A, B-2.x", "two errorCodes, an error without one");

    n = codes("{\"errors\":[{\"errorCode\":\"1\"},{\"errorCode\":\"2\"},"
              "{\"errorCode\":\"3\"},{\"errorCode\":\"4\"},"
              "{\"errorCode\":\"5\"}]}");
    is_str(out, n, "1, 2, 3, 4", "at most four codes");

    n = codes("{\"errorCode\":\"TOP\",\"errors\":[{\"errorCode\":\"IN\"}]}");
    is_str(out, n, "TOP, IN", "a top-level errorCode");

    n = codes("{\"errors\":[{\"errorCode\":\"bad\\r\\nX-Injected: 1\"}]}");
    is_str(out, n, "badX-Injected1", "no control characters, no spaces");

    n = codes("{\"errors\":[{\"errorCode\":12}]}");
    is_int(n, 0, "a number is no code");
    is_int(out[0], 0, "out is empty");

    is_int(codes("{\"error\":\"scripted failure\"}"), 0, "no errors field");
    is_int(codes("<html>502 Bad Gateway</html>"), 0, "not JSON");
    is_int(codes(""), 0, "empty body");
    is_int(codes("{\"errors\":{\"errorCode\":\"X\"}}"), 0,
           "errors is not an array");

    n = codes("{\"errorCode\":\"eyJhbGciOiJIUzI1NiJ9eyJzdWIiOiJ4In0\"}");
    is_str(out, n, "***********************************",
           "a long code in mixed case is masked: a token echoed back");

    n = codes("{\"errorCode\":\"HMAC_SIGNATURE_TIMESTAMP_INVALID\"}");
    is_str(out, n, "HMAC_SIGNATURE_TIMESTAMP_INVALID",
           "a long code in capitals is shown");

    n = imburse_error_codes("{\"errorCode\":\"ABCDEFGHIJ\"}", 23, out, 6);
    is_int(n, 0, "a code that does not fit is left out");
}


static void
test_excerpt(void)
{
    size_t  n;

    n = excerpt("{\"error\":\"scripted failure\",\"status\":500}", 128);
    is_str(out, n, "{\"error\":\"scripted failure\",\"status\":500}",
           "a short body as it is");

    n = excerpt("line1\r\nline2\x01\xff", 128);
    is_str(out, n, "line1..line2..", "control and non-ASCII bytes as .");

    n = excerpt("{\"accessToken\":\"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig\"}",
                128);
    is_str(out, n, "{\"accessToken\":\"****************************************\"}",
           "a token-shaped run is masked");

    n = excerpt("{\"t\":\"abcdefghij\\/klmnopqrstuvwxyz\"}", 128);
    is_str(out, n, "{\"t\":\"****************************\"}",
           "JSON's \\/ escape does not split a run");

    n = excerpt("{\"t\":\"Zm9vYmFyYmF6cXV4\\u002bcXV1eHh4eXl5\"}", 128);
    is_str(out, n, "{\"t\":\"**********************************\"}",
           "JSON's \\u escape does not split a run");

    n = excerpt("t=Zm9vYmFyYmF6cXV4%2BcXV1eHh4eXl5&x=1", 128);
    is_str(out, n, "t=*******************************&x=1",
           "nor does URL encoding");

    n = excerpt("{\"m\":\"can\\u0027t sign\"}", 128);
    is_str(out, n, "{\"m\":\"can\\u0027t sign\"}", "an escape in words stays");

    n = excerpt("{\"t\":\"short\\/run\"}", 128);
    is_str(out, n, "{\"t\":\"short\\/run\"}", "a short run stays");

    n = excerpt("0123456789 0123456789 0123456789", 16);
    is_str(out, n, "0123456789 0...", "cut short with ...");
    is_int(n, 15, "within size - 1");

    n = excerpt("x abcdefghijklmnopqrstuvwxyz0123456789", 16);
    is_str(out, n, "x **********...", "a masked run cut short");

    n = excerpt("abc", 2);
    is_str(out, n, "a", "a tiny buffer");

    is_int(imburse_error_excerpt("abc", 3, out, 0), 0, "no buffer");
}


int
main(void)
{
    test_codes();
    test_excerpt();

    return done_testing();
}
