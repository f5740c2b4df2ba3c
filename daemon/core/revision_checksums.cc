#include "daemon/core/revision_checksums.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\f' || c == '\r' || c == '\v'; }

// The length of the string literal starting at text[i] (at its prefix, if
// any), or 0 when none starts there. Unterminated: to the end.
size_t StringAt(absl::string_view text, size_t i) {
  size_t q = i;
  while (q < text.size() && q - i < 2 && std::isalpha(static_cast<unsigned char>(text[q])) &&
         std::string_view("rRbBuUfF").find(text[q]) != std::string_view::npos) {
    ++q;
  }
  if (q >= text.size() || (text[q] != '\'' && text[q] != '"')) return 0;
  // A prefix must not be the end of a longer name: `x"` is not a string.
  if (q > i && i > 0 &&
      (std::isalnum(static_cast<unsigned char>(text[i - 1])) || text[i - 1] == '_')) {
    return 0;
  }
  const char quote = text[q];
  const bool triple = text.substr(q, 3) == std::string(3, quote);
  size_t j = q + (triple ? 3 : 1);
  while (j < text.size()) {
    if (text[j] == '\\') {
      j += 2;
      continue;
    }
    if (triple && text.substr(j, 3) == std::string(3, quote)) return j + 3 - i;
    if (!triple && text[j] == quote) return j + 1 - i;
    if (!triple && text[j] == '\n') return j - i;  // unterminated: stop at the line
    ++j;
  }
  return text.size() - i;
}

}  // namespace

std::string CodeOf(absl::string_view text) {
  std::string out;
  std::string line;  // the logical line being built
  int depth = 0;     // open brackets: a newline inside them continues the line
  bool at_start = true;
  size_t i = 0;
  auto end_line = [&] {
    // A line that is only a string is a docstring or a statement string.
    if (!line.empty()) absl::StrAppend(&out, line, "\n");
    line.clear();
    at_start = true;
  };
  std::string indent;
  bool only_string = false;
  while (i < text.size()) {
    const char c = text[i];
    if (at_start && depth == 0) {
      indent.clear();
      while (i < text.size() && IsSpace(text[i])) indent += text[i++];
      if (i >= text.size()) break;
      at_start = false;
      only_string = false;
      if (text[i] == '\n' || text[i] == '#') continue;  // blank or comment line
      line = indent;
      if (size_t n = StringAt(text, i)) {
        // A string that starts a line and ends it is no code.
        size_t after = i + n;
        while (after < text.size() && IsSpace(text[after])) ++after;
        if (after >= text.size() || text[after] == '\n' || text[after] == '#') {
          only_string = true;
          i += n;
          continue;
        }
      }
      continue;
    }
    if (c == '\n') {
      ++i;
      if (depth > 0) continue;
      if (only_string) line.clear();
      end_line();
      continue;
    }
    if (c == '#') {
      while (i < text.size() && text[i] != '\n') ++i;
      continue;
    }
    if (c == '\\' && i + 1 < text.size() && text[i + 1] == '\n') {
      i += 2;  // an explicit line continuation
      continue;
    }
    if (IsSpace(c)) {
      ++i;
      continue;
    }
    if (size_t n = StringAt(text, i)) {
      absl::StrAppend(&line, text.substr(i, n));
      i += n;
      continue;
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
    // Keep one space between two names (`import a` is not `importa`).
    if (!line.empty() && i > 0 && IsSpace(text[i - 1]) &&
        (std::isalnum(static_cast<unsigned char>(c)) || c == '_') &&
        (std::isalnum(static_cast<unsigned char>(line.back())) || line.back() == '_')) {
      line += ' ';
    }
    line += c;
    ++i;
  }
  if (only_string) line.clear();
  end_line();
  return out;
}

FileChecksum ChecksumOf(absl::string_view text) {
  return {Sha256Hex(std::string(text)), Sha256Hex(CodeOf(text))};
}

std::string ChecksumSetBody(const ChecksumSet& set) {
  std::string out;
  for (const auto& [revision, f] : set) {
    absl::StrAppend(&out, revision, " ", f.checksum.sha256, " ", f.checksum.code_sha256, " ",
                    absl::ToUnixMicros(f.at), " ", f.baseline ? "baseline" : "applied", "\n");
  }
  return out;
}

absl::StatusOr<ChecksumSet> ParseChecksumSet(absl::string_view body) {
  ChecksumSet set;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
    ++n;
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    int64_t micros = 0;
    if (f.size() != 5 || !absl::SimpleAtoi(f[3], &micros) ||
        (f[4] != "baseline" && f[4] != "applied")) {
      return absl::DataLossError(absl::StrCat("checksum set line ", n,
                                              " is not `revision sha256 code_sha256 "
                                              "micros applied|baseline`"));
    }
    set[std::string(f[0])] = {
        {std::string(f[1]), std::string(f[2])}, absl::FromUnixMicros(micros), f[4] == "baseline"};
  }
  return set;
}

absl::Status ChecksumLedger::Load(StateStore* store) {
  absl::StatusOr<ChecksumSets> loaded = store->LoadChecksums();
  if (!loaded.ok()) return loaded.status();
  MutexLock lock(mu_);
  for (const auto& [id, body] : loaded->bodies) {
    absl::StatusOr<ChecksumSet> set = ParseChecksumSet(body);
    if (!set.ok()) {
      return absl::DataLossError(
          absl::StrCat("the state store's checksum set ", id, ": ", set.status().message()));
    }
    sets_[id] = std::make_shared<const ChecksumSet>(*std::move(set));
  }
  for (const auto& [database, id] : loaded->of) {
    if (sets_.count(id)) of_[database] = id;
  }
  return absl::OkStatus();
}

void ChecksumLedger::BeginPass() {
  MutexLock lock(mu_);
  memo_.clear();
}

std::shared_ptr<const ChecksumSet> ChecksumLedger::SetOf(const std::string& database) const {
  auto it = of_.find(database);
  if (it == of_.end()) return nullptr;
  auto set = sets_.find(it->second);
  return set == sets_.end() ? nullptr : set->second;
}

void ChecksumLedger::Point(const std::string& database, ChecksumSet set) {
  std::string body = ChecksumSetBody(set);
  std::string id = Sha256Hex(body);
  if (!sets_.count(id)) sets_[id] = std::make_shared<const ChecksumSet>(std::move(set));
  auto it = of_.find(database);
  if (it != of_.end() && it->second == id) return;
  of_[database] = id;
  unsaved_.of[database] = id;
  unsaved_.bodies.emplace(id, std::move(body));
}

std::vector<ChangedRevision> ChecksumLedger::Observe(const std::string& database,
                                                     const std::vector<std::string>& applied,
                                                     const CurrentChecksumFn& current,
                                                     absl::Time now) {
  MutexLock lock(mu_);
  std::shared_ptr<const ChecksumSet> set = SetOf(database);
  const std::string key = absl::StrCat(set ? of_[database] : "-", "|", absl::StrJoin(applied, ","));
  auto memo = memo_.find(key);
  if (memo == memo_.end()) {
    ChecksumSet next = set ? *set : ChecksumSet();
    Outcome o;
    for (const std::string& revision : applied) {
      std::optional<FileChecksum> now_sum = current(revision);
      auto it = next.find(revision);
      if (it == next.end()) {
        if (now_sum) next[revision] = {*now_sum, now, true};
        continue;
      }
      if (!now_sum || now_sum->sha256 == it->second.checksum.sha256) continue;
      o.changed.push_back({revision, it->second.checksum.sha256, now_sum->sha256,
                           now_sum->code_sha256 == it->second.checksum.code_sha256, it->second.at,
                           it->second.baseline});
    }
    std::sort(
        o.changed.begin(), o.changed.end(),
        [](const ChangedRevision& a, const ChangedRevision& b) { return a.revision < b.revision; });
    o.set_id = Sha256Hex(ChecksumSetBody(next));
    if (!sets_.count(o.set_id)) sets_[o.set_id] = std::make_shared<const ChecksumSet>(next);
    memo = memo_.emplace(key, std::move(o)).first;
  }
  Point(database, *sets_[memo->second.set_id]);
  return memo->second.changed;
}

void ChecksumLedger::Applied(const std::string& database, const std::vector<std::string>& revisions,
                             bool upgrade, const CurrentChecksumFn& current, absl::Time now) {
  MutexLock lock(mu_);
  std::shared_ptr<const ChecksumSet> set = SetOf(database);
  ChecksumSet next = set ? *set : ChecksumSet();
  for (const std::string& revision : revisions) {
    if (!upgrade) {
      next.erase(revision);
    } else if (std::optional<FileChecksum> sum = current(revision)) {
      next[revision] = {*sum, now, false};
    }
  }
  Point(database, std::move(next));
}

absl::Status ChecksumLedger::Save(StateStore* store) {
  ChecksumSets pending;
  {
    MutexLock lock(mu_);
    if (unsaved_.of.empty()) return absl::OkStatus();
    pending = std::move(unsaved_);
    unsaved_ = ChecksumSets();
  }
  absl::Status s = store->SaveChecksums(pending);
  MutexLock lock(mu_);
  if (!s.ok()) {  // kept for the next Save
    for (auto& [id, body] : pending.bodies) unsaved_.bodies.emplace(id, std::move(body));
    for (auto& [database, id] : pending.of) unsaved_.of.emplace(database, id);
    return s;
  }
  // Sets no database holds any more (replaced by a step or a baseline).
  std::set<std::string> held;
  for (const auto& [database, id] : of_) held.insert(id);
  for (auto it = sets_.begin(); it != sets_.end();) {
    it = held.count(it->first) ? std::next(it) : sets_.erase(it);
  }
  memo_.clear();  // its sets may be gone
  return s;
}

}  // namespace lockstep::daemon
