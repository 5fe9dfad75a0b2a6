/*
 * ISA-L igzip raw DEFLATE for one page at a time, with the stateless
 * (one-shot) entry points. The stream structures and the level buffer are
 * allocated once per context; each page re-initialises the structure.
 *
 * Page functions return total_out (>= 0) or ISA-L's negative return code;
 * for inflate, ISAL_END_INPUT / ISAL_OUT_OVERFLOW (positive in ISA-L) are
 * returned negated as -1000 - code so they cannot be mistaken for a size.
 */
#include <stdint.h>
#include <stdlib.h>

#include <isa-l/igzip_lib.h>

struct refcodec_isal {
    struct isal_zstream deflater;
    struct inflate_state inflater;
    uint32_t level;
    uint8_t *level_buf;
    uint32_t level_buf_size;
};

void refcodec_isal_free(struct refcodec_isal *ctx)
{
    if (ctx) {
        free(ctx->level_buf);
        free(ctx);
    }
}

/* Levels 0 and 1 (ISA-L has 0..3). Returns 0, or ISAL_INVALID_LEVEL / -2 (no memory). */
int refcodec_isal_new(uint32_t level, struct refcodec_isal **out)
{
    struct refcodec_isal *ctx;

    *out = NULL;
    if (level > 1) {
        return ISAL_INVALID_LEVEL;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        return -2;
    }
    ctx->level = level;
    if (level == 1) {
        ctx->level_buf_size = ISAL_DEF_LVL1_DEFAULT;
        ctx->level_buf = malloc(ctx->level_buf_size);
        if (!ctx->level_buf) {
            refcodec_isal_free(ctx);
            return -2;
        }
    }
    *out = ctx;
    return 0;
}

int64_t refcodec_isal_compress(struct refcodec_isal *ctx, const uint8_t *in,
                               uint32_t len, uint8_t *out, uint32_t out_cap)
{
    struct isal_zstream *zs = &ctx->deflater;
    int ret;

    isal_deflate_stateless_init(zs);
    zs->next_in = (uint8_t *)in;
    zs->avail_in = len;
    zs->next_out = out;
    zs->avail_out = out_cap;
    zs->level = ctx->level;
    zs->level_buf = ctx->level_buf;
    zs->level_buf_size = ctx->level_buf_size;
    zs->end_of_stream = 1;
    zs->flush = NO_FLUSH;
    zs->gzip_flag = IGZIP_DEFLATE;
    ret = isal_deflate_stateless(zs);
    if (ret != COMP_OK) {
        return ret;
    }
    return (int64_t)zs->total_out;
}

int64_t refcodec_isal_decompress(struct refcodec_isal *ctx, const uint8_t *in,
                                 uint32_t len, uint8_t *out, uint32_t out_cap)
{
    struct inflate_state *st = &ctx->inflater;
    int ret;

    isal_inflate_init(st);
    st->next_in = (uint8_t *)in;
    st->avail_in = len;
    st->next_out = out;
    st->avail_out = out_cap;
    st->crc_flag = ISAL_DEFLATE;
    ret = isal_inflate_stateless(st);
    if (ret == ISAL_DECOMP_OK) {
        return (int64_t)st->total_out;
    }
    if (ret > 0) {
        return -1000 - ret;
    }
    return ret;
}
