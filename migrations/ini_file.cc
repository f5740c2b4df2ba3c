#include "migrations/ini_file.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace lockstep::migrations {
namespace {

constexpr int kMaxInterpolationDepth = 10;  // configparser.MAX_INTERPOLATION_DEPTH

absl::string_view Strip(absl::string_view s) { return absl::StripAsciiWhitespace(s); }

size_t IndentOf(absl::string_view line) {
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  return i;
}

}  // namespace

absl::StatusOr<IniFile> IniFile::Parse(absl::string_view text, absl::string_view source) {
  IniFile ini;
  ini.source_ = std::string(source);
  Section* current = nullptr;
  std::string current_name;
  Entry* value_entry = nullptr;  // the option a continuation line extends
  size_t value_indent = 0;
  int pending_blank = 0;  // blank lines inside a value, kept if more follows

  auto error = [&](int line, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", line, ": ", what));
  };

  int lineno = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == absl::string_view::npos) end = text.size();
    absl::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    ++lineno;
    pos = end + 1;
    if (end == text.size() && line.empty()) break;

    absl::string_view stripped = Strip(line);
    if (!stripped.empty() && (stripped[0] == '#' || stripped[0] == ';')) continue;
    if (stripped.empty()) {
      if (value_entry != nullptr) ++pending_blank;
      continue;
    }
    size_t indent = IndentOf(line);
    if (value_entry != nullptr && indent > value_indent) {
      value_entry->value.append(pending_blank + 1, '\n');
      value_entry->value.append(stripped.data(), stripped.size());
      pending_blank = 0;
      continue;
    }
    pending_blank = 0;
    value_entry = nullptr;
    if (stripped.front() == '[') {
      size_t close = stripped.rfind(']');
      if (close == absl::string_view::npos || close < 2) {
        return error(lineno, absl::StrCat("malformed section header '", stripped, "'"));
      }
      current_name = std::string(stripped.substr(1, close - 1));
      if (current_name == "DEFAULT") {
        current = &ini.defaults_;
      } else {
        if (ini.sections_.count(current_name)) {
          return error(lineno, absl::StrCat("section '", current_name, "' already exists"));
        }
        current = &ini.sections_[current_name];
      }
      continue;
    }
    if (current == nullptr) {
      return error(lineno, "an option comes before any [section] header");
    }
    size_t delim = stripped.find_first_of("=:");
    if (delim == absl::string_view::npos) {
      return error(lineno, absl::StrCat("expected 'key = value', got '", stripped, "'"));
    }
    std::string key = absl::AsciiStrToLower(Strip(stripped.substr(0, delim)));
    if (key.empty()) return error(lineno, "an option has an empty name");
    if (current->count(key)) {
      return error(lineno, absl::StrCat("option '", key, "' in section '", current_name,
                                        "' already exists"));
    }
    Entry& entry = (*current)[key];
    entry.value = std::string(Strip(stripped.substr(delim + 1)));
    entry.line = lineno;
    value_entry = &entry;
    value_indent = indent;
  }
  // configparser right-strips joined multi-line values.
  for (auto* section : {&ini.defaults_}) {
    for (auto& [k, e] : *section) e.value = std::string(absl::StripTrailingAsciiWhitespace(e.value));
  }
  for (auto& [name, section] : ini.sections_) {
    for (auto& [k, e] : section) e.value = std::string(absl::StripTrailingAsciiWhitespace(e.value));
  }
  return ini;
}

absl::StatusOr<IniFile> IniFile::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("No config file '", path, "' found"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return Parse(buffer.str(), path);
}

void IniFile::SetDefault(std::string key, std::string value) {
  defaults_[absl::AsciiStrToLower(key)] = Entry{std::move(value), 0};
}

bool IniFile::HasSection(absl::string_view section) const {
  return sections_.find(section) != sections_.end();
}

std::optional<std::string> IniFile::GetRaw(absl::string_view section, absl::string_view key) const {
  std::string lower = absl::AsciiStrToLower(key);
  auto sit = sections_.find(section);
  if (sit != sections_.end()) {
    auto it = sit->second.find(lower);
    if (it != sit->second.end()) return it->second.value;
  }
  auto it = defaults_.find(lower);
  if (it != defaults_.end()) return it->second.value;
  return std::nullopt;
}

absl::StatusOr<std::optional<std::string>> IniFile::Get(absl::string_view section,
                                                        absl::string_view key) const {
  std::optional<std::string> raw = GetRaw(section, key);
  if (!raw.has_value()) return std::optional<std::string>();
  absl::StatusOr<std::string> value = Interpolate(section, key, *raw, 1);
  if (!value.ok()) return value.status();
  return std::optional<std::string>(*std::move(value));
}

absl::StatusOr<std::string> IniFile::Interpolate(absl::string_view section, absl::string_view key,
                                                 const std::string& value, int depth) const {
  if (depth > kMaxInterpolationDepth) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_, ": [", section, "] ", key, ": interpolation nests more than ",
        kMaxInterpolationDepth, " levels deep"));
  }
  std::string out;
  for (size_t i = 0; i < value.size();) {
    if (value[i] != '%') {
      out.push_back(value[i++]);
      continue;
    }
    if (i + 1 < value.size() && value[i + 1] == '%') {
      out.push_back('%');
      i += 2;
      continue;
    }
    if (i + 1 < value.size() && value[i + 1] == '(') {
      size_t close = value.find(")s", i + 2);
      if (close != std::string::npos) {
        std::string name = absl::AsciiStrToLower(value.substr(i + 2, close - i - 2));
        std::optional<std::string> ref = GetRaw(section, name);
        if (!ref.has_value()) {
          return absl::InvalidArgumentError(
              absl::StrCat(source_, ": [", section, "] ", key, ": bad interpolation variable '",
                           name, "' (no such option)"));
        }
        absl::StatusOr<std::string> inner = Interpolate(section, name, *ref, depth + 1);
        if (!inner.ok()) return inner.status();
        out += *inner;
        i = close + 2;
        continue;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        source_, ": [", section, "] ", key, ": '%' must be followed by '%' or '(name)s', found ",
        value.substr(i, 10)));
  }
  return out;
}

}  // namespace lockstep::migrations
