// A reader for the .ini dialect Alembic uses (Python's configparser with
// BasicInterpolation), enough to find the script directory exactly as Alembic
// does: sections, `key = value` / `key: value`, indented continuation lines,
// full-line `#`/`;` comments, case-insensitive keys, a DEFAULT section and
// `%(name)s` interpolation (`%%` for a literal percent sign).
//
// Thread-safe for concurrent reads once constructed.
#ifndef LOCKSTEP_MIGRATIONS_INI_FILE_H_
#define LOCKSTEP_MIGRATIONS_INI_FILE_H_

#include <map>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace lockstep::migrations {

class IniFile {
 public:
  // Parses `text`; `source` (usually the file path) prefixes error messages,
  // which name the line: "alembic.ini:12: ...".
  static absl::StatusOr<IniFile> Parse(absl::string_view text, absl::string_view source);
  // Reads and parses a file.
  static absl::StatusOr<IniFile> Load(const std::string& path);

  // Adds a default visible from every section (as ConfigParser(defaults)).
  void SetDefault(std::string key, std::string value);

  bool HasSection(absl::string_view section) const;
  // The raw value of `key` in `section` (or DEFAULT), uninterpolated.
  std::optional<std::string> GetRaw(absl::string_view section, absl::string_view key) const;
  // The interpolated value; nullopt when absent; an error names the key when
  // interpolation refers to a missing key or nests too deep.
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view section,
                                                 absl::string_view key) const;

 private:
  struct Entry {
    std::string value;
    int line = 0;
  };
  using Section = std::map<std::string, Entry, std::less<>>;

  absl::StatusOr<std::string> Interpolate(absl::string_view section, absl::string_view key,
                                          const std::string& value, int depth) const;

  std::string source_;
  Section defaults_;
  std::map<std::string, Section, std::less<>> sections_;
};

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_INI_FILE_H_
