#include "daemon/drivers/backup_files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace lockstep::daemon {
namespace {

// Files names made from database names and revisions: keep them tame.
std::string FileSafe(const std::string& s) {
  std::string out;
  for (char c : s) out += (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out.empty() ? "_" : out;
}

absl::Status FsyncAndRename(const std::string& tmp, const std::string& path) {
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return absl::InternalError(absl::StrCat("cannot sync ", tmp, ": ", std::strerror(errno)));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BackupFile> NewBackupFile(const std::string& name, const std::string& dir,
                                         const std::string& extension, absl::Time start) {
  BackupFile f;
  Backup& b = f.backup;
  size_t slash = name.find('/');
  b.environment = name.substr(0, slash);
  b.database = name.substr(slash + 1);
  b.created_at = start;
  const std::string folder =
      absl::StrCat(dir, "/", FileSafe(b.environment), "/", FileSafe(b.database));
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", folder, ": ", ec.message()));
  b.path =
      absl::StrCat(folder, "/", absl::FormatTime("%Y%m%dT%H%M%E6SZ", start, absl::UTCTimeZone()),
                   extension);
  f.partial = b.path + kPartialSuffix;
  return f;
}

int RemovePartialBackups(const std::string& backup_dir) {
  std::error_code ec;
  int removed = 0;
  std::vector<std::filesystem::path> partial;
  for (auto it = std::filesystem::recursive_directory_iterator(backup_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && it->path().extension() == kPartialSuffix) {
      partial.push_back(it->path());
    }
  }
  for (const std::filesystem::path& p : partial) removed += std::filesystem::remove(p, ec) ? 1 : 0;
  return removed;
}


absl::StatusOr<Backup> FinishBackupFile(BackupFile file) {
  Backup& b = file.backup;
  absl::Status renamed = FsyncAndRename(file.partial, b.path);
  if (!renamed.ok()) return renamed;
  struct stat st;
  if (::stat(b.path.c_str(), &st) != 0) return absl::InternalError("backup vanished: " + b.path);
  b.size_bytes = st.st_size;
  absl::StatusOr<std::string> sum = Sha256OfFile(b.path);
  if (!sum.ok()) return sum.status();
  b.sha256 = *sum;
  b.took = absl::Now() - b.created_at;
  return b;
}

absl::StatusOr<std::string> Sha256OfFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

absl::Status VerifyBackup(const Backup& backup) {
  struct stat st;
  if (::stat(backup.path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup ", backup.id, ": file ", backup.path, " is missing"));
  }
  absl::StatusOr<std::string> sum = Sha256OfFile(backup.path);
  if (!sum.ok()) return absl::FailedPreconditionError(sum.status().message());
  if (st.st_size != backup.size_bytes || *sum != backup.sha256) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup ", backup.id, " is corrupted: ", backup.path, " has ", st.st_size,
                     " bytes and sha256 ", *sum, "; the catalog recorded ", backup.size_bytes,
                     " bytes and ", backup.sha256, ". Refusing to restore it"));
  }
  return absl::OkStatus();
}

}  // namespace lockstep::daemon
