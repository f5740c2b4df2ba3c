// Reading many small files with few system calls.
//
// A project of 10,000 revisions is 10,000 small files: opening, reading and
// closing them one by one costs three system calls each, which is most of
// the time `lockstep heads` takes. With io_uring a whole batch is one call:
// each file's open, read and close are linked in the submission queue, the
// descriptor never leaves the kernel (a "direct" descriptor), and the kernel
// runs the chains while we wait once. Where io_uring is missing or refused
// (old kernels, seccomp profiles of containers) the reader falls back to
// plain openat/read/close with the same results.
#ifndef LOCKSTEP_MIGRATIONS_FILE_BATCH_READER_H_
#define LOCKSTEP_MIGRATIONS_FILE_BATCH_READER_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"

namespace lockstep::migrations {

// A file to read: a name inside a folder open as `dir_fd`.
struct FileRef {
  int dir_fd;
  const char* name;
};

// One per thread: not thread-safe.
class FileBatchReader {
 public:
  static constexpr size_t kBatchSize = 32;

  // `use_io_uring` false forces the plain system calls (tests compare both).
  explicit FileBatchReader(bool use_io_uring = true);
  ~FileBatchReader();
  FileBatchReader(const FileBatchReader&) = delete;
  FileBatchReader& operator=(const FileBatchReader&) = delete;

  // Reads up to kBatchSize files. Afterwards, for each i < files.size(),
  // either error(i) is 0 and contents(i) holds the whole file (valid until
  // the next Read), or error(i) is the errno of the failed open or read.
  void Read(const std::vector<FileRef>& files);
  int error(size_t i) const { return slots_[i].error; }
  absl::string_view contents(size_t i) const { return {slots_[i].bytes.get(), slots_[i].size}; }

  // Whether batches go through io_uring (false after a fallback).
  bool using_io_uring() const { return ring_ != nullptr; }

 private:
  struct Slot {
    std::unique_ptr<char[]> bytes;
    size_t capacity = 0;
    size_t size = 0;
    int error = 0;
  };
  struct Ring;

  bool ReadWithRing(const std::vector<FileRef>& files);
  void ReadPlain(const FileRef& file, Slot* slot);
  static void Grow(Slot* slot);

  Slot slots_[kBatchSize];
  std::unique_ptr<Ring> ring_;
};

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_FILE_BATCH_READER_H_
