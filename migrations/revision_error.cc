#include "migrations/revision_error.h"

#include "absl/strings/string_view.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace lockstep::migrations {
namespace {

constexpr char kPayloadUrl[] = "type.lockstep.dev/RevisionError";
constexpr char kSep = '\x1f';  // unit separator: never in a revision id

std::string Encode(const RevisionError& e) {
  return absl::StrCat(static_cast<int>(e.kind), std::string(1, kSep), e.argument,
                      std::string(1, kSep), absl::StrJoin(e.heads, ","), std::string(1, kSep),
                      e.lower, std::string(1, kSep), e.upper);
}

}  // namespace

absl::Status MakeRevisionError(const RevisionError& error) {
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  if (error.kind == RevisionErrorKind::kResolution) code = absl::StatusCode::kNotFound;
  if (error.kind == RevisionErrorKind::kMultipleHeads) {
    code = absl::StatusCode::kFailedPrecondition;
  }
  absl::Status status(code, error.message);
  status.SetPayload(kPayloadUrl, absl::Cord(Encode(error)));
  return status;
}

absl::Status GenericRevisionError(std::string message) {
  RevisionError e;
  e.message = std::move(message);
  return MakeRevisionError(e);
}

absl::Status ResolutionError(std::string message, std::string argument) {
  RevisionError e;
  e.kind = RevisionErrorKind::kResolution;
  e.message = std::move(message);
  e.argument = std::move(argument);
  return MakeRevisionError(e);
}

absl::Status MultipleHeadsError(std::vector<std::string> heads, std::string argument) {
  RevisionError e;
  e.kind = RevisionErrorKind::kMultipleHeads;
  e.message = absl::StrCat("Multiple heads are present for given argument '", argument,
                               "'; ", absl::StrJoin(heads, ", "));
  e.heads = std::move(heads);
  e.argument = std::move(argument);
  return MakeRevisionError(e);
}

absl::Status RangeNotAncestorError(std::string lower, std::string upper) {
  RevisionError e;
  e.kind = RevisionErrorKind::kRangeNotAncestor;
  e.message = absl::StrCat("Revision ", lower.empty() ? "base" : lower,
                               " is not an ancestor of revision ",
                               upper.empty() ? "base" : upper);
  e.lower = std::move(lower);
  e.upper = std::move(upper);
  return MakeRevisionError(e);
}

std::optional<RevisionError> GetRevisionError(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  std::vector<std::string> parts = absl::StrSplit(std::string(*payload), kSep);
  if (parts.size() != 5) return std::nullopt;
  RevisionError e;
  e.kind = static_cast<RevisionErrorKind>(std::stoi(parts[0]));
  e.message = std::string(status.message());
  e.argument = parts[1];
  if (!parts[2].empty()) e.heads = absl::StrSplit(parts[2], ',');
  e.lower = parts[3];
  e.upper = parts[4];
  return e;
}

std::string CommandErrorMessage(const absl::Status& status, const CommandErrorContext& context) {
  std::optional<RevisionError> error = GetRevisionError(status);
  if (!error.has_value()) return std::string(status.message());
  switch (error->kind) {
    case RevisionErrorKind::kRangeNotAncestor: {
      std::string start = context.start.value_or(error->lower.empty() ? "None" : error->lower);
      std::string end = context.end.value_or(error->upper.empty() ? "None" : error->upper);
      std::string tmpl = context.ancestor.value_or(
          "Requested range %(start)s:%(end)s does not refer to ancestor/descendant revisions "
          "along the same branch");
      return absl::StrReplaceAll(tmpl, {{"%(start)s", start}, {"%(end)s", end}});
    }
    case RevisionErrorKind::kMultipleHeads: {
      std::string head_arg = context.end.value_or(error->argument);
      std::string tmpl = context.multiple_heads.value_or(
          "Multiple head revisions are present for given argument '%(head_arg)s'; please "
          "specify a specific target revision, '<branchname>@%(head_arg)s' to narrow to a "
          "specific head, or 'heads' for all heads");
      return absl::StrReplaceAll(
          tmpl, {{"%(head_arg)s", head_arg}, {"%(heads)s", absl::StrJoin(error->heads, ", ")}});
    }
    case RevisionErrorKind::kResolution:
      return context.resolution.value_or(
          absl::StrCat("Can't locate revision identified by '", error->argument, "'"));
    case RevisionErrorKind::kRevision:
      break;
  }
  return error->message;
}

namespace {
constexpr char kLocationUrl[] = "type.lockstep.dev/FileLocation";
}  // namespace

absl::Status WithFileLocation(absl::Status status, const FileLocation& where) {
  // "<line> <path length> <path><message>": any bytes in either.
  status.SetPayload(kLocationUrl, absl::Cord(absl::StrCat(where.line, " ", where.path.size(), " ",
                                                          where.path, where.message)));
  return status;
}

std::optional<FileLocation> GetFileLocation(const absl::Status& status) {
  auto payload = status.GetPayload(kLocationUrl);
  if (!payload.has_value()) return std::nullopt;
  const std::string text(*payload);
  FileLocation where;
  size_t first = text.find(' ');
  size_t second = first == std::string::npos ? first : text.find(' ', first + 1);
  size_t path_size = 0;
  if (second == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(text).substr(0, first), &where.line) ||
      !absl::SimpleAtoi(absl::string_view(text).substr(first + 1, second - first - 1),
                        &path_size) ||
      second + 1 + path_size > text.size()) {
    return std::nullopt;
  }
  where.path = text.substr(second + 1, path_size);
  where.message = text.substr(second + 1 + path_size);
  return where;
}

}  // namespace lockstep::migrations
