/*
 * Uses qemu-qpl only through include/qemu_qpl.h and the installed library,
 * the way QEMU's multifd shim does: prepare iovecs on the sending side, write
 * them to a "socket" (a byte buffer), and on the receiving side read the
 * lengths, then the data, then decompress into scattered guest pages.
 * Prints TAP and a closing "N passed, N failed" line.
 */
#include <qemu_qpl.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_SIZE 4096u
#define PAGES 128u

static int passed, failed;

static void check(int ok, const char *what, const char *detail)
{
    if (ok) {
        passed++;
        printf("ok %d - %s\n", passed + failed, what);
    } else {
        failed++;
        printf("not ok %d - %s: %s\n", passed + failed, what, detail ? detail : "");
    }
}

/* The "network": what writev would send, read back like qio_channel_read_all. */
static unsigned char *wire;
static size_t wire_len, wire_pos;

static void wire_write(const QemuQplIovec *iov, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        memcpy(wire + wire_len, iov[i].iov_base, iov[i].iov_len);
        wire_len += iov[i].iov_len;
    }
}

static int wire_read(void *buf, size_t len)
{
    if (wire_pos + len > wire_len) {
        return -1;
    }
    memcpy(buf, wire + wire_pos, len);
    wire_pos += len;
    return 0;
}

/* Guest pages: real bytes from a file, a zero page, and incompressible pages. */
static void fill_pages(unsigned char *ram, const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(ram, 1, (size_t)PAGES * PAGE_SIZE, f) : 0;
    if (f) {
        fclose(f);
    }
    uint64_t state = 88172645463325252ull;
    for (size_t i = got; i < (size_t)PAGES * PAGE_SIZE; i++) {
        ram[i] = (unsigned char)(i / 7);
    }
    memset(ram + 3 * PAGE_SIZE, 0, PAGE_SIZE);
    for (size_t i = 0; i < 2 * PAGE_SIZE; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ram[10 * PAGE_SIZE + i] = (unsigned char)(state >> 24);
    }
}

/* A "vCPU" that keeps rewriting guest pages while they are sent. */
struct scribbler {
    volatile unsigned char *ram;
    atomic_int stop;
    unsigned long writes;
};

static void *scribble(void *arg)
{
    struct scribbler *w = arg;
    uint64_t state = 0x9e3779b97f4a7c15ull;
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t page = (state >> 8) % PAGES, off = (state >> 24) % (PAGE_SIZE - 64);
        size_t len = 1 + (state >> 40) % 64, from = (state >> 16) % ((size_t)PAGES * PAGE_SIZE - 64);
        for (size_t k = 0; k < len; k++) {
            /* copy bytes of another page, or a random byte now and then */
            w->ram[page * PAGE_SIZE + off + k] = k % 16 ? w->ram[from + k] : (unsigned char)state;
        }
        w->writes++;
    }
    return NULL;
}

/* Receives one packet of `n` pages from the wire into `dest`; 0 on success. */
static int receive(QemuQplReceiver *r, uint32_t n, uint32_t payload,
                   uint8_t *const *dest, char *msg, size_t msg_len)
{
    uint8_t *buf;
    size_t len;
    if (qemu_qpl_recv_begin(r, n, payload, &buf, &len, msg, msg_len) != QEMU_QPL_STATUS_OK ||
        wire_read(buf, len) != 0 ||
        qemu_qpl_recv_lengths(r, &buf, &len, msg, msg_len) != QEMU_QPL_STATUS_OK ||
        wire_read(buf, len) != 0) {
        return -1;
    }
    return qemu_qpl_recv_pages(r, dest, n, msg, msg_len) == QEMU_QPL_STATUS_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    char msg[256] = "";
    unsigned char *src = malloc((size_t)PAGES * PAGE_SIZE);
    unsigned char *dst = calloc((size_t)PAGES * 2, PAGE_SIZE);
    const uint8_t *pages[PAGES];
    uint8_t *dest[PAGES];
    QemuQplIovec iov[PAGES + 2];
    uint32_t iov_count = 0, payload = 0;
    QemuQplSender *s = NULL;
    QemuQplReceiver *r = NULL;

    wire = malloc((size_t)PAGES * (PAGE_SIZE + 4));
    fill_pages(src, argc > 1 ? argv[1] : "/usr/bin/bash");
    printf("# qemu-qpl %s\n", qemu_qpl_version());

    check(qemu_qpl_sender_new(7, PAGE_SIZE, PAGES, 0, &s, msg, sizeof msg) == QEMU_QPL_STATUS_OK,
          "sender_new", msg);
    check(qemu_qpl_receiver_new(7, PAGE_SIZE, PAGES, &r, msg, sizeof msg) == QEMU_QPL_STATUS_OK,
          "receiver_new", msg);
    if (!s || !r) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }

    /* Send the pages in reverse order, receive them into every other page. */
    for (uint32_t i = 0; i < PAGES; i++) {
        pages[i] = src + (size_t)(PAGES - 1 - i) * PAGE_SIZE;
        dest[i] = dst + (size_t)(2 * i) * PAGE_SIZE;
    }
    check(qemu_qpl_send_prepare(s, pages, PAGES, iov, PAGES + 2, &iov_count, &payload,
                                msg, sizeof msg) == QEMU_QPL_STATUS_OK, "send_prepare", msg);
    check(iov_count >= 1 && iov_count <= PAGES + 1, "at most one iovec per page plus one", NULL);
    int raw_points_at_page = 0;
    for (uint32_t i = 0; i < iov_count; i++) {
        raw_points_at_page |= iov[i].iov_base == (void *)(src + 10 * PAGE_SIZE);
    }
    check(raw_points_at_page, "an incompressible page is sent from the caller's memory", NULL);
    wire_len = wire_pos = 0;
    wire_write(iov, iov_count);
    check(wire_len == payload, "iovecs add up to the payload size", NULL);
    check(payload < PAGES * PAGE_SIZE, "the packet is smaller than its pages", NULL);

    int ok = receive(r, PAGES, payload, dest, msg, sizeof msg) == 0;
    check(ok, "receive", msg);
    int same = 1;
    for (uint32_t i = 0; i < PAGES; i++) {
        same &= memcmp(dest[i], pages[i], PAGE_SIZE) == 0;
        /* the gaps between destination pages stay untouched */
        for (uint32_t b = 0; b < PAGE_SIZE; b++) {
            same &= dst[(size_t)(2 * i + 1) * PAGE_SIZE + b] == 0;
        }
    }
    check(same, "every page arrives intact and nothing else is written", NULL);

    /* A corrupt stream: flip the first stream byte into a reserved block type. */
    wire[PAGES * 4] = 0x07;
    wire_pos = 0;
    ok = receive(r, PAGES, payload, dest, msg, sizeof msg) != 0 &&
         strstr(msg, "channel 7") && strstr(msg, "page 0");
    check(ok, "a corrupt stream fails with a message naming channel and page", msg);
    printf("# %s\n", msg);
    check(qemu_qpl_recv_fault_page(r) == 0, "the receiver names the faulty page's index", NULL);

    /* Pages that a running guest keeps rewriting while they are compressed. */
    struct scribbler w = { .ram = src };
    pthread_t writer;
    int live_ok = pthread_create(&writer, NULL, scribble, &w) == 0;
    int packets = 0;
    for (; live_ok && packets < 200; packets++) {
        for (uint32_t i = 0; i < PAGES; i++) {
            pages[i] = src + (size_t)i * PAGE_SIZE;
        }
        wire_len = wire_pos = 0;
        live_ok = qemu_qpl_send_prepare(s, pages, PAGES, iov, PAGES + 2, &iov_count, &payload,
                                        msg, sizeof msg) == QEMU_QPL_STATUS_OK;
        if (live_ok) {
            wire_write(iov, iov_count);
            live_ok = wire_len == payload && receive(r, PAGES, payload, dest, msg, sizeof msg) == 0;
        }
    }
    atomic_store(&w.stop, 1);
    pthread_join(writer, NULL);
    printf("# %d packets of live pages, %lu writes by the guest thread\n", packets, w.writes);
    check(live_ok && w.writes > 0, "live pages: every packet is valid and inflates page by page", msg);

    /* An empty packet (only zero pages in it) needs no body. */
    uint8_t *buf = NULL;
    size_t len = 1;
    check(qemu_qpl_recv_begin(r, 0, 0, &buf, &len, msg, sizeof msg) == QEMU_QPL_STATUS_OK &&
          len == 0, "packet without normal pages", msg);

    qemu_qpl_sender_free(s);
    qemu_qpl_receiver_free(r);
    free(src);
    free(dst);
    free(wire);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
