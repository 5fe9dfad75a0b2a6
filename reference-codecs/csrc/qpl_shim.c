/*
 * A thin layer over Intel QPL's job API so that Rust needs no copy of the
 * qpl_job layout. One context holds two software-path jobs, allocated once:
 * one compresses and one decompresses, like upstream QEMU's sender and
 * receiver (migration/multifd-qpl.c), which each own their job.
 *
 * Return convention of the page functions: >= 0 is job->total_out, < 0 is
 * the negated qpl_status (every status but QPL_STS_OK is positive).
 */
#include <stdint.h>
#include <stdlib.h>

#include "qpl/qpl.h"

/* Must agree with QplMode in src/intel_qpl.rs. */
enum {
    REFCODEC_QPL_QEMU = 0,         /* level 1, fixed Huffman: QEMU's flags */
    REFCODEC_QPL_DYNAMIC_L1 = 1,   /* level 1 + QPL_FLAG_DYNAMIC_HUFFMAN */
    REFCODEC_QPL_DYNAMIC_L3 = 2,   /* level 3 + QPL_FLAG_DYNAMIC_HUFFMAN */
};

struct refcodec_qpl {
    qpl_job *compress_job;
    qpl_job *decompress_job;
};

static qpl_job *new_job(qpl_status *status)
{
    uint32_t size = 0;
    qpl_job *job;

    *status = qpl_get_job_size(qpl_path_software, &size);
    if (*status != QPL_STS_OK) {
        return NULL;
    }
    job = calloc(1, size);
    if (!job) {
        *status = QPL_STS_OBJECT_ALLOCATION_ERR;
        return NULL;
    }
    *status = qpl_init_job(qpl_path_software, job);
    if (*status != QPL_STS_OK) {
        free(job);
        return NULL;
    }
    return job;
}

static void free_job(qpl_job *job)
{
    if (job) {
        qpl_fini_job(job);
        free(job);
    }
}

void refcodec_qpl_free(struct refcodec_qpl *ctx)
{
    if (ctx) {
        free_job(ctx->compress_job);
        free_job(ctx->decompress_job);
        free(ctx);
    }
}

/* Returns QPL_STS_OK and a context in *out, or the failing status. */
int refcodec_qpl_new(struct refcodec_qpl **out)
{
    qpl_status status = QPL_STS_OK;
    struct refcodec_qpl *ctx = calloc(1, sizeof(*ctx));

    *out = NULL;
    if (!ctx) {
        return QPL_STS_OBJECT_ALLOCATION_ERR;
    }
    ctx->compress_job = new_job(&status);
    if (ctx->compress_job) {
        ctx->decompress_job = new_job(&status);
    }
    if (status != QPL_STS_OK) {
        refcodec_qpl_free(ctx);
        return (int)status;
    }
    *out = ctx;
    return QPL_STS_OK;
}

/* The fields QEMU's multifd_qpl_prepare_job sets, and no others. */
static void prepare(qpl_job *job, qpl_operation op, const uint8_t *in,
                    uint32_t len, uint8_t *out, uint32_t out_cap,
                    uint32_t extra_flags, qpl_compression_levels level)
{
    job->op = op;
    job->next_in_ptr = (uint8_t *)in;
    job->next_out_ptr = out;
    job->available_in = len;
    job->available_out = out_cap;
    job->flags = QPL_FLAG_FIRST | QPL_FLAG_LAST | QPL_FLAG_OMIT_VERIFY | extra_flags;
    job->level = level;
}

static int64_t execute(qpl_job *job)
{
    qpl_status status = qpl_execute_job(job);

    if (status != QPL_STS_OK) {
        return -(int64_t)status;
    }
    return (int64_t)job->total_out;
}

int64_t refcodec_qpl_compress_page(struct refcodec_qpl *ctx, const uint8_t *in,
                                   uint32_t len, uint8_t *out, uint32_t out_cap,
                                   int mode)
{
    switch (mode) {
    case REFCODEC_QPL_QEMU:
        prepare(ctx->compress_job, qpl_op_compress, in, len, out, out_cap, 0,
                qpl_level_1);
        break;
    case REFCODEC_QPL_DYNAMIC_L1:
        prepare(ctx->compress_job, qpl_op_compress, in, len, out, out_cap,
                QPL_FLAG_DYNAMIC_HUFFMAN, qpl_level_1);
        break;
    case REFCODEC_QPL_DYNAMIC_L3:
        prepare(ctx->compress_job, qpl_op_compress, in, len, out, out_cap,
                QPL_FLAG_DYNAMIC_HUFFMAN, qpl_level_3);
        break;
    default:
        return -(int64_t)QPL_STS_INVALID_PARAM_ERR;
    }
    return execute(ctx->compress_job);
}

/* QEMU's decompression job: same flags as compression, level 1. */
int64_t refcodec_qpl_decompress_page(struct refcodec_qpl *ctx, const uint8_t *in,
                                     uint32_t len, uint8_t *out, uint32_t out_cap)
{
    prepare(ctx->decompress_job, qpl_op_decompress, in, len, out, out_cap, 0,
            qpl_level_1);
    return execute(ctx->decompress_job);
}
