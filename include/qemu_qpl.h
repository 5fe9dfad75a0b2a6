/*
 * qemu-qpl: the `qpl` multifd compression method of QEMU live migration.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Generated from src/abi.rs by cbindgen; do not edit (`make header`).
 *
 * Ownership and threads: each QemuQplSender / QemuQplReceiver serves one
 * multifd channel and must be used by one thread at a time (QEMU's channel
 * thread). Objects are independent: different channels may run in parallel.
 * Buffers returned by a call stay valid until the next call on the same
 * object or its free. Every fallible call returns a QemuQplStatus and, on
 * failure, writes a NUL-terminated message (truncated to err_msg_len bytes)
 * into err_msg, which may be NULL when err_msg_len is 0.
 *
 * Receiving one packet takes three calls: qemu_qpl_recv_begin (checks the
 * page count and payload size before anything is read), qemu_qpl_recv_lengths
 * (checks the length array), qemu_qpl_recv_pages (writes the pages).
 */

#ifndef QEMU_QPL_H
#define QEMU_QPL_H

#include <stddef.h>
#include <stdint.h>

// `QemuQplCounters::path`: the channel compresses or decompresses on the CPU.
#define QEMU_QPL_PATH_CPU 0

// `QemuQplCounters::path`: the channel uses an Intel IAA work queue.
#define QEMU_QPL_PATH_IAA 1

// Result of every fallible call.
enum QemuQplStatus
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : int32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  QEMU_QPL_STATUS_OK = 0,
  // The caller broke the contract: a null or misaligned pointer, a size out
  // of range, a call out of order. A bug in the caller, not in the data.
  QEMU_QPL_STATUS_INVALID_ARGUMENT = -1,
  // Data received from the network is malformed. The migration must fail;
  // the message names the channel, the page and the reason.
  QEMU_QPL_STATUS_CORRUPT_PACKET = -2,
  // An allocation failed (only at setup).
  QEMU_QPL_STATUS_OUT_OF_MEMORY = -3,
  // A bug inside the library was caught before it could cross into C.
  QEMU_QPL_STATUS_INTERNAL_ERROR = -4,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum QemuQplStatus QemuQplStatus;
#else
typedef int32_t QemuQplStatus;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// The receiving side of one multifd channel (opaque).
typedef struct QemuQplReceiver QemuQplReceiver;

// The sending side of one multifd channel (opaque).
typedef struct QemuQplSender QemuQplSender;

// One piece of a packet body, laid out exactly like POSIX `struct iovec`.
typedef struct {
  void *iov_base;
  size_t iov_len;
} QemuQplIovec;

// What one channel counted since it was set up (`qemu_qpl_sender_counters`,
// `qemu_qpl_receiver_counters`). Every page counts once:
// `pages_iaa + pages_cpu + pages_raw` is the number of pages the channel
// sent or received. Fields may be added at the end in later versions: the
// caller sets `size` to `sizeof(QemuQplCounters)` and the library fills at
// most that many bytes, then sets `size` to the bytes it filled.
typedef struct {
  // In: the caller's `sizeof(QemuQplCounters)`. Out: bytes filled.
  uint32_t size;
  // `QEMU_QPL_PATH_IAA` while the channel uses the device, else
  // `QEMU_QPL_PATH_CPU` (also after it gave the device up).
  uint32_t path;
  // Pages whose stream the device compressed or decompressed.
  uint64_t pages_iaa;
  // Pages whose stream the CPU compressed or decompressed (fallbacks
  // included).
  uint64_t pages_cpu;
  // Pages sent or received raw (they do not shrink).
  uint64_t pages_raw;
  // Pages given to the CPU because the work queue stayed full.
  uint64_t fallback_queue_full;
  // Pages given to the CPU after an error completion or submission error.
  uint64_t fallback_error;
  // Pages given to the CPU after a page fault that touching did not cure.
  uint64_t fallback_page_fault;
  // Pages given to the CPU when the device did not complete in time (the
  // channel then uses the CPU for good).
  uint64_t fallback_timeout;
  // Receiver: streams the device did not decode to exactly one page,
  // which then got the CPU decoder's verdict.
  uint64_t fallback_rejected;
  // Page-fault completions (each address touched, the job resubmitted once).
  uint64_t page_faults;
  // Descriptors the device accepted.
  uint64_t descriptors;
  // Submissions the work queue refused and that were tried again.
  uint64_t submit_retries;
} QemuQplCounters;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library's version, a static NUL-terminated string.
const char *qemu_qpl_version(void);

// Creates the sender of multifd channel `channel` for pages of `page_size`
// bytes (a power of two from 512 to 65536), at most `pages_per_packet` per
// packet, compressing at `level` (0 = the library's default, which is fast;
// 1 = fast; 2 = strong; 3 = turbo; 4 = auto, which moves between turbo,
// fast and strong as the channel is CPU-bound or waits on the network;
// QEMU passes its `multifd-qpl-level` parameter).
// All buffers are allocated here; `qemu_qpl_send_prepare` allocates nothing.
// On success `*sender_out` holds the new object, to be freed with
// `qemu_qpl_sender_free`. On failure a message goes to `err_msg` (a buffer of
// `err_msg_len` bytes; may be NULL when `err_msg_len` is 0).
//
// # Safety
// `sender_out` must be valid for a pointer write; `err_msg` must hold `err_msg_len` bytes.
QemuQplStatus qemu_qpl_sender_new(uint32_t channel,
                                  uint32_t page_size,
                                  uint32_t pages_per_packet,
                                  uint32_t level,
                                  QemuQplSender **sender_out,
                                  char *err_msg,
                                  size_t err_msg_len);

// Frees a sender. NULL is ignored. Iovecs from its last prepare become invalid.
//
// # Safety
// `sender` is NULL or a live handle from `qemu_qpl_sender_new`, not used again.
void qemu_qpl_sender_free(QemuQplSender *sender);

// Compresses `page_count` pages into one packet body exactly as upstream
// QEMU's `qpl` method sends it: the big-endian u32 length array, then each
// page's DEFLATE stream, or the page itself when compressing does not make it
// shorter than a page. The body is described by at most `page_count + 1`
// iovecs written to `iov` (room for `iov_capacity`), their number to
// `*iov_count` and the body's total size to `*payload_size`. Raw pages point
// at the caller's memory (no copy); the rest point into the sender and stay
// valid until its next prepare or free. `page_count == 0` yields no iovecs.
// The pages may be live guest RAM that vCPUs keep writing during the call:
// each page is read once, into a copy that is compressed, so every stream
// inflates to one page (of old bytes, new bytes or a mix; the page is dirty
// and will be sent again). Returns `INTERNAL_ERROR` (and the iovecs must not
// be used) if the library finds a segment outside its own buffer.
//
// # Safety
// `sender` is a live handle used by no other thread; `pages` holds `page_count` pointers each to `page_size` readable bytes; `iov` holds `iov_capacity` entries; `iov_count`, `payload_size` are writable; `err_msg` holds `err_msg_len` bytes.
QemuQplStatus qemu_qpl_send_prepare(QemuQplSender *sender,
                                    const uint8_t *const *pages,
                                    uint32_t page_count,
                                    QemuQplIovec *iov,
                                    uint32_t iov_capacity,
                                    uint32_t *iov_count,
                                    uint32_t *payload_size,
                                    char *err_msg,
                                    size_t err_msg_len);

// Creates the receiver of multifd channel `channel`; the arguments are as for
// `qemu_qpl_sender_new` (the receiver reads every level). Free it with
// `qemu_qpl_receiver_free`.
//
// # Safety
// `receiver_out` must be valid for a pointer write; `err_msg` must hold `err_msg_len` bytes.
QemuQplStatus qemu_qpl_receiver_new(uint32_t channel,
                                    uint32_t page_size,
                                    uint32_t pages_per_packet,
                                    QemuQplReceiver **receiver_out,
                                    char *err_msg,
                                    size_t err_msg_len);

// Frees a receiver. NULL is ignored.
//
// # Safety
// `receiver` is NULL or a live handle from `qemu_qpl_receiver_new`, not used again.
void qemu_qpl_receiver_free(QemuQplReceiver *receiver);

// Step 1 of receiving a packet: checks the normal page count and the payload
// size (`next_packet_size`) from multifd's packet header, and says where to
// read the length array (`*lengths_buf`, `*lengths_len` bytes: 4 per page).
// For `page_count == 0` the length is 0 and the packet is complete.
//
// # Safety
// `receiver` is a live handle used by no other thread; the out-pointers are writable; `err_msg` holds `err_msg_len` bytes.
QemuQplStatus qemu_qpl_recv_begin(QemuQplReceiver *receiver,
                                  uint32_t page_count,
                                  uint64_t payload_size,
                                  uint8_t **lengths_buf,
                                  size_t *lengths_len,
                                  char *err_msg,
                                  size_t err_msg_len);

// Step 2: checks the big-endian lengths now in the step 1 buffer (each at
// most a page, none zero, their sum matching the payload) and says where to
// read the pages' bytes (`*data_buf`, `*data_len` bytes).
//
// # Safety
// As for `qemu_qpl_recv_begin`; the length array must have been written into step 1's buffer.
QemuQplStatus qemu_qpl_recv_lengths(QemuQplReceiver *receiver,
                                    uint8_t **data_buf,
                                    size_t *data_len,
                                    char *err_msg,
                                    size_t err_msg_len);

// After a call on `receiver` returned `QEMU_QPL_STATUS_CORRUPT_PACKET`: the
// index, in the packet, of the page whose length or stream was bad, so that
// the caller can name the page by its RAMBlock and offset; -1 when the fault
// concerned the packet as a whole (its page count, payload size or the sum of
// its lengths), when there was no such fault since the last
// `qemu_qpl_recv_begin`, or when `receiver` is NULL.
//
// # Safety
// `receiver` is NULL or a live handle used by no other thread.
int64_t qemu_qpl_recv_fault_page(const QemuQplReceiver *receiver);

// Step 3: inflates (or copies, for raw pages) each page of the packet into
// `dest_pages[i]`, each pointing at one writable page that overlaps no other
// and none of the receiver's buffers. `page_count` must equal step 1's count.
// Nothing is written outside the destination pages. On error the pages from
// the failing one on hold unspecified bytes and the migration must fail.
//
// # Safety
// `receiver` is a live handle used by no other thread; `dest_pages` holds `page_count` pointers, each to `page_size` writable bytes overlapping nothing else; `err_msg` holds `err_msg_len` bytes.
QemuQplStatus qemu_qpl_recv_pages(QemuQplReceiver *receiver,
                                  uint8_t *const *dest_pages,
                                  uint32_t page_count,
                                  char *err_msg,
                                  size_t err_msg_len);

// Writes one line into `buf` (`buf_len` bytes, NUL-terminated, truncated)
// saying which engine compresses this sender's pages and why: for example
// `IAA: iax1 wq1.0 (shared WQ of 128 entries, block on fault, NUMA node 0)
// via ENQCMD; fixed Huffman` or `CPU: no IAA device in
// /sys/bus/dsa/devices`. QEMU logs it once per channel.
//
// # Safety
// `sender` is a live handle used by no other thread; `buf` holds `buf_len` bytes; `err_msg` holds `err_msg_len` bytes.
QemuQplStatus qemu_qpl_sender_path(QemuQplSender *sender,
                                   char *buf,
                                   size_t buf_len,
                                   char *err_msg,
                                   size_t err_msg_len);

// As `qemu_qpl_sender_path`, for a receiver.
//
// # Safety
// As for `qemu_qpl_sender_path`.
QemuQplStatus qemu_qpl_receiver_path(QemuQplReceiver *receiver,
                                     char *buf,
                                     size_t buf_len,
                                     char *err_msg,
                                     size_t err_msg_len);

// Fills `*counters` with what the sender counted since setup (set
// `counters->size = sizeof(QemuQplCounters)` first). QEMU reports them when
// the channel is cleaned up; tests read them.
//
// # Safety
// `sender` is a live handle used by no other thread; `counters` points at `counters->size` writable bytes; `err_msg` holds `err_msg_len` bytes.
QemuQplStatus qemu_qpl_sender_counters(QemuQplSender *sender,
                                       QemuQplCounters *counters,
                                       char *err_msg,
                                       size_t err_msg_len);

// As `qemu_qpl_sender_counters`, for a receiver.
//
// # Safety
// As for `qemu_qpl_sender_counters`.
QemuQplStatus qemu_qpl_receiver_counters(QemuQplReceiver *receiver,
                                         QemuQplCounters *counters,
                                         char *err_msg,
                                         size_t err_msg_len);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* QEMU_QPL_H */
