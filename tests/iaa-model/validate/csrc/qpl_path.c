/*
 * Intel QPL jobs on a chosen execution path (hardware or software), set up
 * exactly as upstream QEMU's migration/multifd-qpl.c sets up its jobs, with
 * QEMU's submit-all-then-wait pattern available through submit/wait.
 *
 * Return convention: a qpl_status (0 = QPL_STS_OK).
 */
#include <stdint.h>
#include <stdlib.h>

#include "qpl/qpl.h"

/* Must agree with JobMode in src/qpl.rs. */
enum {
    MODE_QEMU = 0,           /* FIRST | LAST | OMIT_VERIFY, level 1 */
    MODE_QEMU_VERIFY = 1,    /* FIRST | LAST, level 1 */
    MODE_DYNAMIC = 2,        /* FIRST | LAST | OMIT_VERIFY | DYNAMIC_HUFFMAN */
    MODE_DYNAMIC_VERIFY = 3, /* FIRST | LAST | DYNAMIC_HUFFMAN */
};

/* QEMU's MAX_SUBMIT_RETRY_NUM. */
#define SUBMIT_RETRIES 3

int iaa_job_new(int hardware, qpl_job **out)
{
    qpl_path_t path = hardware ? qpl_path_hardware : qpl_path_software;
    uint32_t size = 0;
    qpl_status status = qpl_get_job_size(path, &size);
    if (status != QPL_STS_OK) {
        return status;
    }
    qpl_job *job = calloc(1, size);
    if (!job) {
        return QPL_STS_OBJECT_ALLOCATION_ERR;
    }
    status = qpl_init_job(path, job);
    if (status != QPL_STS_OK) {
        free(job);
        return status;
    }
    *out = job;
    return QPL_STS_OK;
}

void iaa_job_free(qpl_job *job)
{
    if (job) {
        qpl_fini_job(job);
        free(job);
    }
}

void iaa_job_prepare(qpl_job *job, int compress, int mode, const uint8_t *in, uint32_t in_len,
                     uint8_t *out, uint32_t out_len)
{
    job->op = compress ? qpl_op_compress : qpl_op_decompress;
    job->next_in_ptr = (uint8_t *)in;
    job->next_out_ptr = out;
    job->available_in = in_len;
    job->available_out = out_len;
    job->flags = QPL_FLAG_FIRST | QPL_FLAG_LAST;
    if (mode == MODE_QEMU || mode == MODE_DYNAMIC) {
        job->flags |= QPL_FLAG_OMIT_VERIFY;
    }
    if (compress && (mode == MODE_DYNAMIC || mode == MODE_DYNAMIC_VERIFY)) {
        job->flags |= QPL_FLAG_DYNAMIC_HUFFMAN;
    }
    job->level = qpl_default_level;
}

/* qpl_submit_job with QEMU's retries on a full queue. */
int iaa_job_submit(qpl_job *job)
{
    qpl_status status;
    int tries = 0;
    do {
        status = qpl_submit_job(job);
    } while (status == QPL_STS_QUEUES_ARE_BUSY_ERR && tries++ < SUBMIT_RETRIES);
    return status;
}

int iaa_job_wait(qpl_job *job)
{
    return qpl_wait_job(job);
}

int iaa_job_execute(qpl_job *job)
{
    return qpl_execute_job(job);
}

uint32_t iaa_job_total_out(const qpl_job *job)
{
    return job->total_out;
}

uint32_t iaa_job_crc(const qpl_job *job)
{
    return job->crc;
}

uint32_t iaa_job_xor(const qpl_job *job)
{
    return job->xor_checksum;
}
