#include "migrations/script_directory.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <thread>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "migrations/computed_headers.h"
#include "migrations/file_batch_reader.h"
#include "migrations/ini_file.h"
#include "migrations/revision_error.h"

namespace lockstep::migrations {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Python's repr() of a plain path, for messages Alembic formats with %r.
std::string Repr(const std::string& s) { return absl::StrCat("'", s, "'"); }

// Alembic's revision file filter: `(?!\.\#|__init__)(.*\.py)$`, or with
// sourceless also `.pyc`/`.pyo`.
// A line break: `.` does not match it, so Alembic skips such a name.
bool IsRevisionFileName(absl::string_view name, bool sourceless) {
  if (absl::StartsWith(name, ".#") || absl::StartsWith(name, "__init__")) return false;
  if (absl::StrContains(name, '\n')) return false;
  if (absl::EndsWith(name, ".py")) return true;
  return sourceless && (absl::EndsWith(name, ".pyc") || absl::EndsWith(name, ".pyo"));
}

// What a directory entry that is neither a file nor a folder is, for a
// warning: reading a FIFO blocks, and a device or socket is no source file.
const char* SpecialKind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

// Lists `dir`: regular entries into `files` (names of symbolic links also
// into `links`), folders into `subdirs`, anything else (FIFOs, sockets,
// devices, dangling links) into `special` as "name (kind)"; each sorted.
absl::Status ListDir(const std::string& dir, std::vector<std::string>* files,
                     std::vector<std::string>* subdirs, std::set<std::string>* links,
                     std::vector<std::pair<std::string, std::string>>* special) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot read version folder ", dir, ": ", std::strerror(errno)));
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
      struct stat st;
      if (::stat((dir + "/" + name).c_str(), &st) != 0) {
        special->emplace_back(std::move(name), "a dangling link");
        continue;
      }
      is_dir = S_ISDIR(st.st_mode);
      if (!is_dir && !S_ISREG(st.st_mode)) {
        special->emplace_back(std::move(name), SpecialKind(st.st_mode));
        continue;
      }
      if (!is_dir && e->d_type == DT_LNK) links->insert(name);
    } else if (e->d_type != DT_DIR && e->d_type != DT_REG) {
      struct stat st;
      mode_t mode = ::lstat((dir + "/" + name).c_str(), &st) == 0 ? st.st_mode : 0;
      special->emplace_back(std::move(name), SpecialKind(mode));
      continue;
    }
    (is_dir ? subdirs : files)->push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(files->begin(), files->end());
  std::sort(subdirs->begin(), subdirs->end());
  std::sort(special->begin(), special->end());
  return absl::OkStatus();
}

// Splits version_locations the way the configured separator says.
absl::StatusOr<std::vector<std::string>> SplitLocations(const std::string& value,
                                                        const std::optional<std::string>& sep,
                                                        const std::string& source) {
  std::vector<std::string> out;
  if (!sep.has_value()) {
    // Legacy: split on ", *" or " +".
    std::string cur;
    for (size_t i = 0; i < value.size(); ++i) {
      if (value[i] == ',' || value[i] == ' ') {
        out.push_back(cur);
        cur.clear();
        if (value[i] == ',') {
          while (i + 1 < value.size() && value[i + 1] == ' ') ++i;
        } else {
          while (i + 1 < value.size() && value[i + 1] == ' ') ++i;
        }
        continue;
      }
      cur.push_back(value[i]);
    }
    out.push_back(cur);
    return out;
  }
  std::string split;
  if (*sep == "space") {
    split = " ";
  } else if (*sep == "os" || *sep == ":") {
    split = ":";
  } else if (*sep == ";") {
    split = ";";
  } else if (*sep == "newline") {
    split = "\n";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": '", *sep,
                     "' is not a valid value for version_path_separator; expected 'space', "
                     "'newline', 'os', ':', ';'"));
  }
  for (absl::string_view part : absl::StrSplit(value, split)) {
    absl::string_view p = absl::StripAsciiWhitespace(part);
    if (!p.empty()) out.emplace_back(p);
  }
  return out;
}

}  // namespace

std::string CurrentDir() {
  char buf[PATH_MAX];
  if (::getcwd(buf, sizeof buf) == nullptr) return "/";
  return buf;
}

std::string AbsPath(const std::string& path, const std::string& cwd) {
  std::string joined = (!path.empty() && path[0] == '/') ? path : cwd + "/" + path;
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(joined, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  // POSIX keeps a leading "//" but Python's normpath does too; rare enough to
  // ignore here.
  return "/" + absl::StrJoin(parts, "/");
}

absl::StatusOr<ScriptLocation> LocateScriptsFromIni(const std::string& ini_path,
                                                    const std::string& cwd,
                                                    const std::string& section) {
  std::string missing = absl::StrCat("No config file ", Repr(ini_path),
                                     " found, or file has no '[", section, "]' section");
  if (!Exists(ini_path)) return absl::NotFoundError(missing);
  absl::StatusOr<IniFile> ini = IniFile::Load(ini_path);
  if (!ini.ok()) return ini.status();
  if (!ini->HasSection(section)) return absl::NotFoundError(missing);
  ini->SetDefault("here", AbsPath(DirName(ini_path), cwd));

  auto get = [&](const char* key) { return ini->Get(section, key); };
  absl::StatusOr<std::optional<std::string>> script_location = get("script_location");
  if (!script_location.ok()) return script_location.status();
  if (!script_location->has_value()) {
    return absl::InvalidArgumentError("No 'script_location' key found in configuration.");
  }
  std::string loc = **script_location;
  if (loc.empty() || (loc[0] != '/' && loc.find(':') != std::string::npos)) {
    return absl::UnimplementedError(absl::StrCat(
        ini_path, ": script_location '", loc,
        "' names a Python package resource; lockstep needs a filesystem path"));
  }
  ScriptLocation out;
  out.config_file = ini_path;
  out.script_dir = AbsPath(loc, cwd);
  if (!Exists(out.script_dir)) {
    return absl::NotFoundError(absl::StrCat("Path doesn't exist: ", Repr(out.script_dir),
                                            ".  Please use the 'init' command to create a new "
                                            "scripts folder."));
  }
  absl::StatusOr<std::optional<std::string>> locations = get("version_locations");
  if (!locations.ok()) return locations.status();
  if (locations->has_value() && !(*locations)->empty()) {
    absl::StatusOr<std::optional<std::string>> sep = get("version_path_separator");
    if (!sep.ok()) return sep.status();
    if (!sep->has_value()) {
      sep = get("path_separator");
      if (!sep.ok()) return sep.status();
    }
    absl::StatusOr<std::vector<std::string>> parts = SplitLocations(**locations, *sep, ini_path);
    if (!parts.ok()) return parts.status();
    for (const std::string& p : *parts) out.version_locations.push_back(AbsPath(p, cwd));
    out.explicit_version_locations = true;
  } else {
    out.version_locations.push_back(out.script_dir + "/versions");
  }
  for (auto [key, flag] : {std::pair{"recursive_version_locations", &out.recursive},
                           std::pair{"sourceless", &out.sourceless}}) {
    absl::StatusOr<std::optional<std::string>> v = get(key);
    if (!v.ok()) return v.status();
    *flag = v->has_value() && **v == "true";
  }
  absl::StatusOr<std::optional<std::string>> sys_path = get("prepend_sys_path");
  if (!sys_path.ok()) return sys_path.status();
  if (sys_path->has_value()) {
    // Alembic splits it on ", ", spaces and colons, and leaves each relative
    // to the working directory.
    for (absl::string_view part : absl::StrSplit(**sys_path, absl::ByAnyChar(", :"),
                                                 absl::SkipEmpty())) {
      out.sys_path.push_back(AbsPath(std::string(part), cwd));
    }
  }
  out.cwd = cwd;
  return out;
}

absl::StatusOr<ScriptLocation> LocateScriptsFromDir(const std::string& dir,
                                                    const std::string& cwd) {
  ScriptLocation out;
  out.script_dir = AbsPath(dir, cwd);
  if (!IsDir(out.script_dir)) {
    return absl::NotFoundError(absl::StrCat("Path doesn't exist: ", Repr(out.script_dir)));
  }
  std::string versions = out.script_dir + "/versions";
  // A folder that holds revision files itself (no versions/) is accepted too.
  out.version_locations.push_back(IsDir(versions) ? versions : out.script_dir);
  return out;
}

absl::StatusOr<LoadedScripts> LoadScripts(const ScriptLocation& location,
                                          const std::vector<std::string>& python) {
  // Phase 1, sequential: walk the folders in Alembic's order and list the
  // files to read, skipping what Alembic skips.
  // The listings stay alive until the files are parsed: a Pending entry
  // points into them (no copy of 10,000 names).
  std::deque<std::string> dirs;
  std::deque<std::vector<std::string>> listings;
  struct Pending {
    int dir_fd;
    const std::string* dir;   // the folder as Alembic prints it
    const std::string* name;  // the file name in it
    absl::Status unreadable;  // known before reading (kept in load order)
  };
  std::vector<Pending> pending;
  std::vector<int> dir_fds;
  LoadedScripts out;
  absl::flat_hash_set<std::string> seen_real_paths;
  auto close_all = [&] {
    for (int fd : dir_fds) ::close(fd);
  };

  std::function<absl::Status(const std::string&)> walk = [&](const std::string& dir_name) {
    const std::string& dir = dirs.emplace_back(dir_name);
    std::vector<std::string>& files = listings.emplace_back();
    std::vector<std::string> subdirs;
    std::set<std::string> links;
    std::vector<std::pair<std::string, std::string>> special;
    absl::Status listed = ListDir(dir, &files, &subdirs, &links, &special);
    if (!listed.ok()) return listed;
    // Never opened: a FIFO would block every reader (refresh, plan, the
    // offline CLI) until someone writes to it. Alembic cannot import one.
    for (const auto& [name, kind] : special) {
      if (!IsRevisionFileName(name, location.sourceless)) continue;
      out.warnings.push_back(
          absl::StrCat(dir, "/", name, " is ", kind, ", not a revision file; skipped"));
    }
    // Alembic skips a file reached twice (by its real path). Resolve the
    // folder once; only a symbolic link needs resolving on its own.
    char real[PATH_MAX];
    std::string real_dir = ::realpath(dir.c_str(), real) ? real : dir;
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
      return absl::NotFoundError(
          absl::StrCat("cannot open version folder ", dir, ": ", std::strerror(errno)));
    }
    dir_fds.push_back(dir_fd);
    pending.reserve(pending.size() + files.size());
    for (const std::string& name : files) {
      if (!IsRevisionFileName(name, location.sourceless)) {
        if (absl::StrContains(name, '\n') && absl::StrContains(name, ".py")) {
          out.warnings.push_back(absl::StrCat(
              dir, "/", absl::StrReplaceAll(name, {{"\n", "\\n"}}),
              " has a line break in its name; Alembic does not load it, so neither does "
              "lockstep (rename it if it is a revision)"));
        }
        continue;
      }
      // One folder lists each name once: real paths matter only when several
      // folders are read (or a link points elsewhere).
      bool may_repeat = location.version_locations.size() > 1 || location.recursive ||
                        links.count(name) > 0;
      std::string real_path;
      if (may_repeat) {
        real_path = real_dir + "/" + name;
        if (links.count(name) && ::realpath((dir + "/" + name).c_str(), real)) real_path = real;
      }
      if (may_repeat && !seen_real_paths.insert(real_path).second) {
        out.warnings.push_back(absl::StrCat("File ", real_path,
                                            " loaded twice! ignoring. Please ensure "
                                            "version_locations is unique."));
        continue;
      }
      if (!absl::EndsWith(name, ".py")) {
        // Compiled only: skip when the source is there, as Alembic does.
        if (std::binary_search(files.begin(), files.end(), name.substr(0, name.size() - 1))) {
          continue;
        }
        const std::string why =
            "sourceless revision files (.pyc/.pyo) cannot be read statically; keep the .py "
            "source beside it";
        absl::Status sourceless = WithFileLocation(
            absl::UnimplementedError(absl::StrCat(dir, "/", name, ": ", why)),
            {absl::StrCat(dir, "/", name), 0, why});
        pending.push_back({dir_fd, &dir, &name, std::move(sourceless)});
        continue;
      }
      pending.push_back({dir_fd, &dir, &name, absl::OkStatus()});
    }
    if (location.recursive) {
      for (const std::string& sub : subdirs) {
        if (sub == "__pycache__") continue;
        absl::Status s = walk(dir + "/" + sub);
        if (!s.ok()) return s;
      }
    }
    return absl::OkStatus();
  };
  for (const std::string& dir : location.version_locations) {
    if (location.explicit_version_locations && !Exists(dir)) continue;
    absl::Status s = walk(dir);
    if (!s.ok()) {
      close_all();
      return s;
    }
  }

  // Phase 2, parallel: read and parse. Opening files costs system calls,
  // which is most of the time on large projects: each thread reads batches
  // of files with one call where io_uring allows (FileBatchReader), and the
  // threads overlap what remains. Parsed files go straight into their final
  // places; errors beside them.
  std::vector<RevisionFile> parsed(pending.size());
  std::vector<absl::Status> failed(pending.size());
  std::vector<std::optional<std::string>> computed_source(pending.size());
  std::atomic<size_t> next{0};
  // Setting up a ring costs more than it saves on a small project.
  bool use_io_uring = pending.size() >= 256;
  auto work = [&] {
    FileBatchReader reader(use_io_uring);
    std::string path;
    std::vector<FileRef> batch;
    std::vector<size_t> batch_index;
    while (true) {
      size_t begin = next.fetch_add(FileBatchReader::kBatchSize);
      if (begin >= pending.size()) break;
      size_t end = std::min(pending.size(), begin + FileBatchReader::kBatchSize);
      batch.clear();
      batch_index.clear();
      for (size_t i = begin; i < end; ++i) {
        if (!pending[i].unreadable.ok()) {
          failed[i] = pending[i].unreadable;
          continue;
        }
        batch.push_back({pending[i].dir_fd, pending[i].name->c_str()});
        batch_index.push_back(i);
      }
      reader.Read(batch);
      for (size_t k = 0; k < batch.size(); ++k) {
        size_t i = batch_index[k];
        const Pending& p = pending[i];
        path.assign(*p.dir).append("/").append(*p.name);
        if (reader.error(k) != 0) {
          const std::string why = absl::StrCat("cannot read file: ", std::strerror(reader.error(k)));
          failed[i] = WithFileLocation(absl::PermissionDeniedError(absl::StrCat(path, ": ", why)),
                                       {path, 0, why});
          continue;
        }
        absl::Status s = ParseRevisionFileInto(reader.contents(k), path, *p.name, &parsed[i]);
        if (!s.ok()) failed[i] = std::move(s);
        if (s.ok() && !parsed[i].computed.empty()) computed_source[i] = std::string(reader.contents(k));
      }
    }
  };
  size_t threads = std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), 8);
  if (pending.size() < 512) threads = 1;
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  close_all();

  // Phase 3, only for files with computed headers: Python imports them.
  std::vector<ComputedFile> computed;
  std::vector<size_t> computed_index;
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (!computed_source[i]) continue;
    computed.push_back({&parsed[i], *std::move(computed_source[i]), absl::OkStatus()});
    computed_index.push_back(i);
  }
  if (!computed.empty()) ComputeHeaders(python, location, &computed);
  for (size_t k = 0; k < computed.size(); ++k) {
    if (!computed[k].status.ok()) failed[computed_index[k]] = std::move(computed[k].status);
  }

  // Drop the files that failed, in place (usually none).
  size_t kept = 0;
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (!failed[i].ok()) {
      out.errors.push_back(std::move(failed[i]));
      continue;
    }
    if (kept != i) parsed[kept] = std::move(parsed[i]);
    ++kept;
  }
  parsed.resize(kept);
  out.files = std::move(parsed);
  return out;
}

}  // namespace lockstep::migrations
