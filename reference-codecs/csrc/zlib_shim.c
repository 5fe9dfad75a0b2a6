/*
 * zlib raw DEFLATE (windowBits -15) for one page at a time. The two z_streams
 * are initialised once and reset per page (deflateReset/inflateReset).
 *
 * Page functions return total_out (>= 0) or a negative code: zlib's own
 * negative return codes, or the REFCODEC_ZLIB_* codes below.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define REFCODEC_ZLIB_DOES_NOT_FIT (-100)   /* deflate: output limit reached */
#define REFCODEC_ZLIB_UNFINISHED (-101)     /* inflate: no final block before input or output ran out */
#define REFCODEC_ZLIB_TRAILING (-102)       /* inflate: bytes follow the final block */

struct refcodec_zlib {
    z_stream deflater;
    z_stream inflater;
    int deflater_ready;
    int inflater_ready;
};

void refcodec_zlib_free(struct refcodec_zlib *ctx)
{
    if (ctx) {
        if (ctx->deflater_ready) {
            deflateEnd(&ctx->deflater);
        }
        if (ctx->inflater_ready) {
            inflateEnd(&ctx->inflater);
        }
        free(ctx);
    }
}

/* Returns Z_OK and a context in *out, or zlib's error code. */
int refcodec_zlib_new(int level, struct refcodec_zlib **out)
{
    struct refcodec_zlib *ctx = calloc(1, sizeof(*ctx));
    int ret;

    *out = NULL;
    if (!ctx) {
        return Z_MEM_ERROR;
    }
    ret = deflateInit2(&ctx->deflater, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    if (ret != Z_OK) {
        refcodec_zlib_free(ctx);
        return ret;
    }
    ctx->deflater_ready = 1;
    ret = inflateInit2(&ctx->inflater, -15);
    if (ret != Z_OK) {
        refcodec_zlib_free(ctx);
        return ret;
    }
    ctx->inflater_ready = 1;
    *out = ctx;
    return Z_OK;
}

int64_t refcodec_zlib_compress(struct refcodec_zlib *ctx, const uint8_t *in,
                               uint32_t len, uint8_t *out, uint32_t out_cap)
{
    z_stream *zs = &ctx->deflater;
    int ret = deflateReset(zs);

    if (ret != Z_OK) {
        return ret;
    }
    zs->next_in = (Bytef *)in;
    zs->avail_in = len;
    zs->next_out = out;
    zs->avail_out = out_cap;
    ret = deflate(zs, Z_FINISH);
    if (ret == Z_STREAM_END) {
        return (int64_t)zs->total_out;
    }
    if (ret == Z_OK || ret == Z_BUF_ERROR) {
        return REFCODEC_ZLIB_DOES_NOT_FIT;
    }
    return ret;
}

int64_t refcodec_zlib_decompress(struct refcodec_zlib *ctx, const uint8_t *in,
                                 uint32_t len, uint8_t *out, uint32_t out_cap)
{
    z_stream *zs = &ctx->inflater;
    int ret = inflateReset(zs);

    if (ret != Z_OK) {
        return ret;
    }
    zs->next_in = (Bytef *)in;
    zs->avail_in = len;
    zs->next_out = out;
    zs->avail_out = out_cap;
    ret = inflate(zs, Z_FINISH);
    if (ret == Z_STREAM_END) {
        if (zs->avail_in != 0) {
            return REFCODEC_ZLIB_TRAILING;
        }
        return (int64_t)zs->total_out;
    }
    if (ret == Z_OK || ret == Z_BUF_ERROR) {
        return REFCODEC_ZLIB_UNFINISHED;
    }
    return ret;
}
