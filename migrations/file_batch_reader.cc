#include "migrations/file_batch_reader.h"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace lockstep::migrations {
namespace {

constexpr size_t kInitialCapacity = 16384;  // revision files are a few KB
enum Op : uint64_t { kOpen = 0, kRead = 1, kClose = 2 };

uint64_t Tag(size_t slot, Op op) { return (static_cast<uint64_t>(slot) << 2) | op; }

}  // namespace

struct FileBatchReader::Ring {
  io_uring ring;
};

FileBatchReader::FileBatchReader(bool use_io_uring) {
  for (Slot& slot : slots_) Grow(&slot);
  if (!use_io_uring) return;
  auto ring = std::make_unique<Ring>();
  if (io_uring_queue_init(kBatchSize * 3, &ring->ring, 0) != 0) return;
  // One fixed-file slot per batch entry; each chain opens into its own.
  if (io_uring_register_files_sparse(&ring->ring, kBatchSize) != 0) {
    int empty[kBatchSize];
    for (int& fd : empty) fd = -1;
    if (io_uring_register_files(&ring->ring, empty, kBatchSize) != 0) {
      io_uring_queue_exit(&ring->ring);
      return;
    }
  }
  ring_ = std::move(ring);
}

FileBatchReader::~FileBatchReader() {
  if (ring_ != nullptr) io_uring_queue_exit(&ring_->ring);
}

void FileBatchReader::Grow(Slot* slot) {
  size_t capacity = slot->capacity == 0 ? kInitialCapacity : slot->capacity * 2;
  std::unique_ptr<char[]> bigger(new char[capacity]);
  if (slot->size > 0) std::memcpy(bigger.get(), slot->bytes.get(), slot->size);
  slot->bytes = std::move(bigger);
  slot->capacity = capacity;
}

void FileBatchReader::Read(const std::vector<FileRef>& files) {
  if (ring_ != nullptr && !ReadWithRing(files)) {
    // The ring failed as a whole: drop it (the kernel cancels whatever it
    // still holds; direct descriptors never reached our table) and read
    // this batch and the next ones plainly.
    io_uring_queue_exit(&ring_->ring);
    ring_.reset();
  }
  if (ring_ == nullptr) {
    for (size_t i = 0; i < files.size(); ++i) ReadPlain(files[i], &slots_[i]);
  }
}

bool FileBatchReader::ReadWithRing(const std::vector<FileRef>& files) {
  io_uring* ring = &ring_->ring;
  for (size_t k = 0; k < files.size(); ++k) {
    Slot& slot = slots_[k];
    slot.size = 0;
    slot.error = 0;
    // open -> read -> close, linked: a failed open cancels the read; the
    // read is hard-linked to the close, so a failed read (a folder) still
    // frees the slot. Direct descriptors take no O_CLOEXEC (they are never
    // in the process's table).
    io_uring_sqe* open = io_uring_get_sqe(ring);
    io_uring_prep_openat_direct(open, files[k].dir_fd, files[k].name, O_RDONLY | O_NONBLOCK, 0,
                                static_cast<unsigned>(k));
    open->flags |= IOSQE_IO_LINK;
    open->user_data = Tag(k, kOpen);
    io_uring_sqe* read = io_uring_get_sqe(ring);
    io_uring_prep_read(read, static_cast<int>(k), slot.bytes.get(),
                       static_cast<unsigned>(slot.capacity), 0);
    read->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    read->user_data = Tag(k, kRead);
    io_uring_sqe* close = io_uring_get_sqe(ring);
    io_uring_prep_close_direct(close, static_cast<unsigned>(k));
    close->user_data = Tag(k, kClose);
  }
  unsigned expected = static_cast<unsigned>(files.size() * 3);
  int submitted;
  do {
    submitted = io_uring_submit_and_wait(ring, expected);
  } while (submitted == -EINTR);
  if (submitted != static_cast<int>(expected)) return false;

  // Every submission completes exactly once (a cancelled link with
  // -ECANCELED), so exactly `expected` completions arrive.
  bool needs_plain[kBatchSize] = {};
  bool unsupported = false;
  for (unsigned seen = 0; seen < expected;) {
    io_uring_cqe* cqe = nullptr;
    int waited = io_uring_wait_cqe(ring, &cqe);
    if (waited == -EINTR) continue;
    if (waited < 0) return false;
    size_t k = cqe->user_data >> 2;
    Op op = static_cast<Op>(cqe->user_data & 3);
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    ++seen;
    if (op == kOpen && res < 0) {
      needs_plain[k] = true;
      // A kernel without direct descriptors refuses every open alike.
      if (res == -EINVAL || res == -EOPNOTSUPP || res == -EBADF) unsupported = true;
    }
    if (op == kRead) {
      if (res < 0) {
        needs_plain[k] = true;
      } else {
        slots_[k].size = static_cast<size_t>(res);
        // A full buffer may mean more bytes: the plain path reads the rest.
        if (slots_[k].size == slots_[k].capacity) needs_plain[k] = true;
      }
    }
  }
  if (unsupported) return false;
  // Failures are rare (a file removed meanwhile, a big file, an open flag an
  // old kernel refuses): the plain calls give the authoritative result and
  // errno for those files.
  for (size_t k = 0; k < files.size(); ++k) {
    if (needs_plain[k]) ReadPlain(files[k], &slots_[k]);
  }
  return true;
}

void FileBatchReader::ReadPlain(const FileRef& file, Slot* slot) {
  slot->size = 0;
  slot->error = 0;
  int fd = ::openat(file.dir_fd, file.name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    slot->error = errno;
    return;
  }
  while (true) {
    if (slot->size == slot->capacity) Grow(slot);
    ssize_t n = ::read(fd, slot->bytes.get() + slot->size, slot->capacity - slot->size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      slot->error = errno;
      slot->size = 0;
      break;
    }
    slot->size += static_cast<size_t>(n);
    // No fstat: a short read of a regular file is its end.
    if (n == 0 || slot->size < slot->capacity) break;
  }
  ::close(fd);
}

}  // namespace lockstep::migrations
