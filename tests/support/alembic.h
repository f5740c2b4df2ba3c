// Runs the real Alembic (Debian's /usr/bin/alembic) for C++ tests.
#ifndef LOCKSTEP_TESTS_SUPPORT_ALEMBIC_H_
#define LOCKSTEP_TESTS_SUPPORT_ALEMBIC_H_

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/support/postgres_server.h"

namespace lockstep::testing {

// The example project's alembic.ini ($LOCKSTEP_SOURCE_DIR, set by CTest).
inline std::string ExampleProjectDir() {
  const char* src = std::getenv("LOCKSTEP_SOURCE_DIR");
  return std::string(src ? src : ".") + "/migrations/example";
}

// `alembic -c ini -x url=URL args...`; returns its exit code, output in *out.
inline int RunAlembic(const std::string& ini, const std::string& url,
                      const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {"/usr/bin/alembic", "-c", ini, "-x", "url=" + url};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, out);
}

}  // namespace lockstep::testing

#endif  // LOCKSTEP_TESTS_SUPPORT_ALEMBIC_H_
