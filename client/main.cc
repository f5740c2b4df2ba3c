// `lockstep`: the command-line client. Offline commands read an Alembic
// project directly; online commands (added with the daemon) talk gRPC.
#include <limits.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "build_info.h"
#include "client/cli_args.h"
#include "client/offline_commands.h"

namespace {

// Page faults are a large part of reading a big project: 10,000 revision
// files leave ~15 MB of parsed text and graph on the heap, faulted in 4 KB at
// a time (and each fault is a trap, in a VM also an exit: ~10 us here).
// Grow the heap in one 64 MB step up front (only touched pages count) and
// ask for transparent huge pages on it, so most of it arrives 2 MB at a
// time. Where the kernel gives no huge pages this changes nothing.
void BackHeapWithHugePages() {
  constexpr size_t kPad = 64 << 20;
  constexpr uintptr_t kHuge = 2 << 20;
  mallopt(M_TOP_PAD, kPad);
  mallopt(M_TRIM_THRESHOLD, 2 * kPad);   // keep it: no shrinking at free
  mallopt(M_MMAP_THRESHOLD, 32 << 20);   // big vectors too stay on the heap
  auto* before = static_cast<char*>(::sbrk(0));
  void* volatile grow = std::malloc(1 << 20);  // volatile: not optimised away
  std::free(grow);
  auto* after = static_cast<char*>(::sbrk(0));
  uintptr_t begin = (reinterpret_cast<uintptr_t>(before) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(after) & ~(kHuge - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// Runs the online commands' executable, found beside this one.
int ExecOnline(char** argv) {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir = ".";
  if (n > 0) {
    std::string path(self, static_cast<size_t>(n));
    dir = path.substr(0, path.rfind('/'));
  }
  std::string online = dir + "/lockstep-online";
  ::execv(online.c_str(), argv);
  std::cerr << "lockstep: cannot run " << online << " (online commands): " << std::strerror(errno)
            << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lockstep::client;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--version") {
      std::cout << "lockstep " << lockstep::kVersion << " (commit " << lockstep::kCommit << ")\n";
      return kExitOk;
    }
    if (std::string(argv[i]) == "--") break;
  }
  absl::StatusOr<CliArgs> args = ParseCliArgs(argc, argv);
  if (!args.ok()) {
    std::cerr << "lockstep: " << args.status().message() << "\n";
    return kExitUsage;
  }
  if (args->help) {
    std::cout << HelpText(args->command);
    return kExitOk;
  }
  if (args->command.empty()) {
    std::cout << HelpText("");
    return kExitUsage;
  }
  if (IsOfflineCommand(args->command)) {
    BackHeapWithHugePages();
    return RunOfflineCommand(*args, std::cout, std::cerr);
  }
  if (IsOnlineCommand(args->command)) return ExecOnline(argv);
  std::cerr << "lockstep: unknown command '" << args->command << "'\n";
  return kExitUsage;
}
