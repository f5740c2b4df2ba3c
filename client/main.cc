// `lockstep`: the command-line client. Offline commands read an Alembic
// project directly; online commands (added with the daemon) talk gRPC.
#include <limits.h>
#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <unistd.h>

#include <iostream>
#include <string>

#include "client/cli_args.h"
#include "client/offline_commands.h"

namespace {

constexpr char kUsage[] = R"(usage: lockstep [options] COMMAND [ARGS]

Offline commands (read alembic.ini like Alembic, or --scripts DIR):
  heads [--resolve-dependencies] [-v]   show current heads
  branches [-v]                         show branch points
  history [-r START:END] [-v]           list revisions, newest first
  show REV                              show one revision (or several: heads)
  lint                                  report problems; exit 3 on findings
  path TARGET [--from R1,R2] [--downgrade]
                                        the steps and version-table changes
                                        `alembic upgrade|downgrade TARGET` runs

Online commands (ask lockstepd; --server ADDR or $LOCKSTEP_SERVER,
default 127.0.0.1:50051):
  status [ENV] [--check]                where every database stands; --check
                                        exits 3 unless all are current
  db ENV/NAME                           one database and its revision history
  refresh                               check every database now
  plan [--to REV] [--env E,..] [--db F,..] [--override-promotion]
       [--allow-lint CODE,..]           the rollout plan and what blocks it;
                                        changes nothing
  rollout --to REV [--env ..] [--db ..] [--watch|--wait]
          [--override-promotion] [--allow-lint CODE,..]
                                        start a rollout (--watch: follow it;
                                        --wait: the same, quietly)
  watch ID                              follow a rollout (past events first)
  rollout ID | rollouts [--limit N]     one rollout | the newest ones
  approve|pause|resume|abort ID [--actor NAME]
  downgrade ENV/NAME --to REV           one database, with a backup first
  backups [ENV[/NAME]] [--limit N]      the backup catalog
  restore ID [--yes] [--actor NAME]     put a backup back, after a safety backup
                                        of what is there; --yes: even though
                                        the database changed since the backup

Options:
  -c, --config FILE     alembic.ini (default: $ALEMBIC_CONFIG or ./alembic.ini)
  --scripts DIR         a script directory instead of an ini file
  -n, --name SECTION    the ini section (default: alembic)
  -o, --output FORMAT   text (default) or json
  -h, --help            this help

  --server ADDR         lockstepd's gRPC address

Exit codes: 0 ok, 1 error, 2 usage, 3 findings/not clean; rollout --watch,
watch and downgrade: 0 succeeded, 4 failed, 5 halted, 6 awaiting approval,
7 aborted.
)";

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
  absl::StatusOr<CliArgs> args = ParseCliArgs(argc, argv);
  if (!args.ok()) {
    std::cerr << "lockstep: " << args.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  if (args->Flag("help") || args->command.empty() || args->command == "help") {
    std::cout << kUsage;
    return args->command.empty() && !args->Flag("help") ? kExitUsage : kExitOk;
  }
  if (IsOfflineCommand(args->command)) {
    BackHeapWithHugePages();
    return RunOfflineCommand(*args, std::cout, std::cerr);
  }
  if (IsOnlineCommand(args->command)) return ExecOnline(argv);
  std::cerr << "lockstep: unknown command '" << args->command << "'\n" << kUsage;
  return kExitUsage;
}
