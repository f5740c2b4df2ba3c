// A throwaway folder for one C++ test (header-only: the migrations tests
// link no test-support library).
#ifndef LOCKSTEP_TESTS_SUPPORT_TEMP_DIR_H_
#define LOCKSTEP_TESTS_SUPPORT_TEMP_DIR_H_

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace lockstep::testing {

// A fresh folder /tmp/<prefix>-XXXXXX, removed with everything in it when
// the object goes. A test fixture holds one, so each test gets its own.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::string name = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(name.data()) == nullptr) {
      std::perror(("mkdtemp " + name).c_str());
      std::abort();
    }
    path_ = name;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace lockstep::testing

#endif  // LOCKSTEP_TESTS_SUPPORT_TEMP_DIR_H_
