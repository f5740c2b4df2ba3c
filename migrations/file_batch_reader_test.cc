#include "migrations/file_batch_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace lockstep::migrations {
namespace {

namespace fs = std::filesystem;

// Both ways of reading (io_uring batches and plain system calls) must give
// the same bytes and the same errors.
class FileBatchReaderTest : public ::testing::TestWithParam<bool> {
 protected:
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(root_ + "/" + name, std::ios::binary) << text;
  }

  lockstep::testing::TempDir tmp_{"lockstep-fbr"};
  std::string root_ = tmp_.path();
};

TEST_P(FileBatchReaderTest, ReadsWholeFilesSmallAndLargeAndReportsMissingOnes) {
  std::string big(100000, 'x');
  for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
  Write("empty.py", "");
  Write("small.py", "revision = 'a'\n");
  Write("big.py", big);
  Write("exact.py", std::string(16384, 'e'));  // exactly the first buffer
  int dir_fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dir_fd, 0);

  FileBatchReader reader(GetParam());
  std::vector<FileRef> files = {{dir_fd, "small.py"},   {dir_fd, "missing.py"},
                                {dir_fd, "big.py"},     {dir_fd, "empty.py"},
                                {dir_fd, "exact.py"},   {dir_fd, "small.py"}};
  // Twice: buffers and fixed-file slots are reused across batches.
  for (int round = 0; round < 2; ++round) {
    reader.Read(files);
    EXPECT_EQ(reader.error(0), 0);
    EXPECT_EQ(reader.contents(0), "revision = 'a'\n");
    EXPECT_EQ(reader.error(1), ENOENT);
    EXPECT_EQ(reader.error(2), 0);
    EXPECT_EQ(reader.contents(2), big);
    EXPECT_EQ(reader.error(3), 0);
    EXPECT_EQ(reader.contents(3), "");
    EXPECT_EQ(reader.contents(4), std::string(16384, 'e'));
    EXPECT_EQ(reader.contents(5), "revision = 'a'\n");
  }
  if (!GetParam()) {
    EXPECT_FALSE(reader.using_io_uring());
  }
  if (GetParam() && !reader.using_io_uring()) {
    std::cout << "note: io_uring is not available here; the plain path was used\n";
  }
  // A full batch of distinct files.
  std::vector<std::string> names;
  for (size_t i = 0; i < FileBatchReader::kBatchSize; ++i) {
    names.push_back("f" + std::to_string(i) + ".py");
    Write(names.back(), "content " + std::to_string(i));
  }
  files.clear();
  for (const std::string& name : names) files.push_back({dir_fd, name.c_str()});
  reader.Read(files);
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(reader.error(i), 0);
    EXPECT_EQ(reader.contents(i), "content " + std::to_string(i));
  }
  // Reading a folder as a file fails with the kernel's errno, as read(2) does.
  ::mkdir((root_ + "/sub").c_str(), 0755);
  bool ring_before = reader.using_io_uring();
  reader.Read({{dir_fd, "sub"}});
  EXPECT_EQ(reader.error(0), EISDIR);
  // The failed read left its slot free: the next batch still uses the ring.
  reader.Read({{dir_fd, "small.py"}});
  EXPECT_EQ(reader.error(0), 0);
  EXPECT_EQ(reader.contents(0), "revision = 'a'\n");
  EXPECT_EQ(reader.using_io_uring(), ring_before);
  ::close(dir_fd);
}

INSTANTIATE_TEST_SUITE_P(IoUringAndPlain, FileBatchReaderTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "IoUring" : "Plain"; });

}  // namespace
}  // namespace lockstep::migrations
