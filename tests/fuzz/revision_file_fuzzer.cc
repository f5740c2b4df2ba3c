// libFuzzer target: the static revision-file parser must never crash, and
// whatever it accepts must be a revision id Alembic would accept, unless the
// id is computed (then Python reads it: computed_headers.h).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "migrations/revision_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto file = lockstep::migrations::ParseRevisionFile(text, "/fuzz/abc123.py", "abc123.py");
  if (file.ok()) {
    bool computed = false;
    for (const auto& [name, line] : file->computed) computed = computed || name == "revision";
    if (computed) return 0;
    if (file->revision.empty()) std::abort();
    if (!lockstep::migrations::VerifyRevisionId(file->revision).ok()) std::abort();
  } else if (file.status().message().find("/fuzz/abc123.py") != 0) {
    std::abort();  // every error names the file
  }
  return 0;
}
