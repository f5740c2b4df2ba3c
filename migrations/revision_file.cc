#include "migrations/revision_file.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "migrations/revision_error.h"

namespace lockstep::migrations {
namespace {

enum class TokenKind { kName, kString, kNumber, kOp };

struct Token {
  TokenKind kind;
  absl::string_view text;  // raw source text, prefixes and quotes included
  int line;
};

// One logical line of Python: its tokens, the physical line it starts on and
// whether it starts at column 0 (a module-level statement).
struct LogicalLine {
  std::vector<Token> tokens;
  int line = 0;
  bool top_level = false;
};

// Character classes of the tokenizer, one table lookup each (the <cctype>
// functions go through the locale on every call). Bytes >= 0x80 belong to
// non-ASCII identifiers, which Python allows.
enum CharClass : unsigned char { kNameStart = 1, kNameChar = 2, kDigit = 4, kNumberChar = 8 };

constexpr std::array<unsigned char, 256> MakeCharClasses() {
  std::array<unsigned char, 256> table{};
  for (int c = 0; c < 256; ++c) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
    bool digit = c >= '0' && c <= '9';
    table[c] = static_cast<unsigned char>((alpha ? kNameStart : 0) |
                                          (alpha || digit ? kNameChar : 0) |
                                          (digit ? kDigit : 0) |
                                          ((alpha || digit) && c < 0x80 ? kNumberChar : 0));
  }
  return table;
}
constexpr std::array<unsigned char, 256> kCharClasses = MakeCharClasses();

bool Is(char c, CharClass cls) { return kCharClasses[static_cast<unsigned char>(c)] & cls; }

// Whether `c` followed by `next` is one of Python's two-character operators.
// Only those ending in `=` (and `->`, `**`, `//`, `<<`, `>>`) matter: they
// keep `+=` or `==` from being read as an assignment.
bool IsTwoCharOperator(char c, char next) {
  if (next == '=') return absl::string_view("=!<>+-*/%&|^:@").find(c) != absl::string_view::npos;
  return (c == '-' && next == '>') ||
         (next == c && (c == '*' || c == '/' || c == '<' || c == '>'));
}

// Splits Python source into logical lines. Fails on unterminated strings or
// brackets and on NUL bytes, which Python itself refuses.
class Tokenizer {
 public:
  Tokenizer(absl::string_view src, absl::string_view path) : src_(src), path_(path) {}

  // Calls `emit(line)` for each logical line as soon as it ends; the line's
  // storage is reused for the next one.
  template <typename Emit>
  absl::Status Run(Emit&& emit) {
    if (src_.find('\0') != absl::string_view::npos) {
      return Error(LineAt(src_.find('\0')), "source code cannot contain null bytes");
    }
    size_t i = 0;
    // A UTF-8 byte order mark is allowed at the start.
    if (src_.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
    // Reused across the files a thread parses: allocations are a large part
    // of reading thousands of small files.
    thread_local LogicalLine current;
    thread_local std::vector<std::pair<char, int>> open;  // bracket, line
    current.tokens.clear();
    open.clear();
    int depth = 0;
    bool at_line_start = true;
    while (i < src_.size()) {
      char c = src_[i];
      if (at_line_start && depth == 0 && current.tokens.empty()) {
        // Measure indentation of a new logical line.
        size_t j = i;
        while (j < src_.size() && (src_[j] == ' ' || src_[j] == '\t' || src_[j] == '\f')) ++j;
        current.top_level = (j == i);
        current.line = line_;
        at_line_start = false;
        i = j;
        continue;
      }
      if (c == '\n') {
        ++line_;
        ++i;
        if (depth == 0) {
          if (!current.tokens.empty()) {
            absl::Status s = emit(current);
            if (!s.ok()) return s;
          }
          current.tokens.clear();
          at_line_start = true;
        }
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\f' || c == '\r') {
        ++i;
        continue;
      }
      if (c == '#') {
        while (i < src_.size() && src_[i] != '\n') ++i;
        continue;
      }
      if (c == '\\') {
        size_t j = i + 1;
        if (j < src_.size() && src_[j] == '\r') ++j;
        if (j < src_.size() && src_[j] == '\n') {
          ++line_;
          i = j + 1;
          continue;
        }
        return Error(line_, "unexpected character after line continuation character");
      }
      if (Is(c, kNameStart)) {
        size_t j = i;
        while (j < src_.size() && Is(src_[j], kNameChar)) ++j;
        absl::string_view word = src_.substr(i, j - i);
        if (j < src_.size() && (src_[j] == '\'' || src_[j] == '"') && IsStringPrefix(word)) {
          absl::Status s = ReadString(i, j, &current);
          if (!s.ok()) return s;
          i = next_;
          continue;
        }
        current.tokens.push_back({TokenKind::kName, word, line_});
        i = j;
        continue;
      }
      if (c == '\'' || c == '"') {
        absl::Status s = ReadString(i, i, &current);
        if (!s.ok()) return s;
        i = next_;
        continue;
      }
      if (Is(c, kDigit) || (c == '.' && i + 1 < src_.size() && Is(src_[i + 1], kDigit))) {
        size_t j = i;
        while (j < src_.size() && (Is(src_[j], kNumberChar) || src_[j] == '.')) ++j;
        current.tokens.push_back({TokenKind::kNumber, src_.substr(i, j - i), line_});
        i = j;
        continue;
      }
      if (c == '(' || c == '[' || c == '{') {
        ++depth;
        open.push_back({c, line_});
      } else if (c == ')' || c == ']' || c == '}') {
        char want = c == ')' ? '(' : c == ']' ? '[' : '{';
        if (open.empty() || open.back().first != want) {
          return Error(line_, absl::StrCat("unmatched '", std::string(1, c), "'"));
        }
        open.pop_back();
        --depth;
      }
      size_t len = i + 1 < src_.size() && IsTwoCharOperator(c, src_[i + 1]) ? 2 : 1;
      current.tokens.push_back({TokenKind::kOp, src_.substr(i, len), line_});
      i += len;
    }
    if (!open.empty()) {
      return Error(open.back().second,
                   absl::StrCat("'", std::string(1, open.back().first), "' was never closed"));
    }
    if (!current.tokens.empty()) return emit(current);
    return absl::OkStatus();
  }

 private:
  static bool IsStringPrefix(absl::string_view word) {
    if (word.size() > 2) return false;
    std::string lower = absl::AsciiStrToLower(word);
    return lower == "r" || lower == "u" || lower == "b" || lower == "f" || lower == "br" ||
           lower == "rb" || lower == "fr" || lower == "rf";
  }

  // Reads a string literal whose prefix starts at `start` and quote at `quote`.
  absl::Status ReadString(size_t start, size_t quote, LogicalLine* current) {
    char q = src_[quote];
    bool triple = src_.substr(quote, 3) == std::string(3, q);
    int start_line = line_;
    size_t j = quote + (triple ? 3 : 1);
    while (true) {
      if (j >= src_.size()) {
        return Error(start_line, triple ? "unterminated triple-quoted string literal"
                                        : "unterminated string literal");
      }
      char c = src_[j];
      if (c == '\\') {
        if (j + 1 < src_.size() && src_[j + 1] == '\n') ++line_;
        j += 2;
        continue;
      }
      if (c == '\n') {
        if (!triple) return Error(start_line, "unterminated string literal");
        ++line_;
      }
      if (c == q) {
        if (!triple) {
          ++j;
          break;
        }
        if (src_.substr(j, 3) == std::string(3, q)) {
          j += 3;
          break;
        }
      }
      ++j;
    }
    current->tokens.push_back({TokenKind::kString, src_.substr(start, j - start), start_line});
    next_ = j;
    return absl::OkStatus();
  }

  int LineAt(size_t offset) const {
    return 1 + static_cast<int>(std::count(src_.begin(), src_.begin() + offset, '\n'));
  }

  absl::Status Error(int line, absl::string_view message) const {
    return WithFileLocation(absl::InvalidArgumentError(absl::StrCat(path_, ":", line, ": ", message)),
                            {std::string(path_), line, std::string(message)});
  }

  absl::string_view src_;
  absl::string_view path_;
  int line_ = 1;
  size_t next_ = 0;
};

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

struct StringValue {
  std::string value;
  bool is_bytes = false;
  bool is_fstring = false;
};

// Decodes a string literal token as Python would (escapes, raw strings).
StringValue DecodeString(absl::string_view token) {
  StringValue out;
  size_t p = 0;
  bool raw = false;
  while (token[p] != '\'' && token[p] != '"') {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(token[p])));
    if (c == 'r') raw = true;
    if (c == 'b') out.is_bytes = true;
    if (c == 'f') out.is_fstring = true;
    ++p;
  }
  char q = token[p];
  size_t qlen = token.substr(p, 3) == std::string(3, q) ? 3 : 1;
  absl::string_view body = token.substr(p + qlen, token.size() - p - 2 * qlen);
  if (raw) {
    out.value = std::string(body);
    return out;
  }
  std::string& s = out.value;
  s.reserve(body.size());
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      s.push_back(c);
      continue;
    }
    char e = body[++i];
    switch (e) {
      case '\n': break;
      case '\\': s.push_back('\\'); break;
      case '\'': s.push_back('\''); break;
      case '"': s.push_back('"'); break;
      case 'a': s.push_back('\a'); break;
      case 'b': s.push_back('\b'); break;
      case 'f': s.push_back('\f'); break;
      case 'n': s.push_back('\n'); break;
      case 'r': s.push_back('\r'); break;
      case 't': s.push_back('\t'); break;
      case 'v': s.push_back('\v'); break;
      case 'x':
      case 'u':
      case 'U': {
        size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        bool ok = i + n < body.size();
        for (size_t k = 1; ok && k <= n; ++k) {
          int h = HexValue(body[i + k]);
          if (h < 0) ok = false;
          cp = cp * 16 + static_cast<uint32_t>(h < 0 ? 0 : h);
        }
        if (!ok || cp > 0x10FFFF) {
          s.push_back('\\');
          s.push_back(e);
          break;
        }
        if (e == 'x' && out.is_bytes) {
          s.push_back(static_cast<char>(cp));
        } else {
          AppendUtf8(cp, &s);
        }
        i += n;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k) {
            cp = cp * 8 + static_cast<uint32_t>(body[++i] - '0');
          }
          AppendUtf8(cp, &s);
        } else {
          s.push_back('\\');
          s.push_back(e);
        }
    }
  }
  return out;
}

bool IsPythonSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
         (c >= '\x1c' && c <= '\x1f');
}

std::string PyStrip(absl::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && IsPythonSpace(s[b])) ++b;
  while (e > b && IsPythonSpace(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// The names a statement assigns: `a = b = value` has two.
using Targets = absl::InlinedVector<absl::string_view, 4>;

class FileParser {
 public:
  FileParser(absl::string_view path, absl::string_view filename, RevisionFile* out)
      : result_(*out) {
    result_.path = std::string(path);
    result_.filename = std::string(filename);
  }

  absl::Status Parse(absl::string_view source) {
    Tokenizer tokenizer(source, result_.path);
    bool first = true;
    absl::Status status = tokenizer.Run([&](const LogicalLine& line) -> absl::Status {
      bool was_first = first;
      first = false;
      return Statement(line, was_first);
    });
    if (!status.ok()) return status;
    EndFunction();
    if (!have_revision_) {
      // Legacy: the id may come from a file name of hex digits.
      absl::string_view name = result_.filename;
      bool legacy = name.size() > 3 && name.substr(name.size() - 3) == ".py";
      for (size_t i = 0; legacy && i + 3 < name.size(); ++i) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) legacy = false;
      }
      if (!legacy || name.size() == 3) {
        return Error(0, absl::StrCat("Could not determine revision id from filename ",
                                     result_.filename,
                                     ": no module-level 'revision' assignment"));
      }
      result_.revision = std::string(name.substr(0, name.size() - 3));
    }
    if (!have_down_) {
      return Error(0, "no module-level 'down_revision' assignment (Alembic requires one)");
    }
    const bool revision_computed =
        !result_.computed.empty() && std::any_of(result_.computed.begin(), result_.computed.end(),
                                                 [](const auto& c) { return c.first == "revision"; });
    if (revision_computed) return absl::OkStatus();  // checked once Python has it
    absl::Status id_status = VerifyRevisionId(result_.revision);
    if (!id_status.ok()) {
      return Error(result_.revision_line, id_status.message());
    }
    return absl::OkStatus();
  }

 private:
  // One module-level statement (or a line inside a function body).
  absl::Status Statement(const LogicalLine& line, bool first) {
    if (first && IsDocstring(line)) {
      ReadDocstring(line);
      return absl::OkStatus();
    }
    if (!line.top_level) {
      if (function_ != nullptr && !IsTrivialStatement(line.tokens, 0)) function_empty_ = false;
      return absl::OkStatus();
    }
    EndFunction();
    const std::vector<Token>& t = line.tokens;
    if (t[0].kind == TokenKind::kName && t[0].text == "def" && t.size() > 1) {
      StartFunction(line);
      return absl::OkStatus();
    }
    Targets targets;
    size_t value_start = 0;
    if (!SplitAssignment(line, &targets, &value_start)) {
      if (t[0].kind == TokenKind::kName && IsTracked(t[0].text) && t.size() > 1 &&
          t[1].kind == TokenKind::kOp && t[1].text.size() == 2 && t[1].text[1] == '=' &&
          t[1].text != "==") {
        Computed(t[0].text, line.line);  // an augmented assignment
      }
      return absl::OkStatus();
    }
    for (absl::string_view target : targets) {
      if (!IsTracked(target)) continue;
      std::vector<std::string> values;
      bool is_sequence = false;
      absl::Status s = ReadLiteral(line, value_start, target, &values, &is_sequence);
      if (!s.ok()) {
        Computed(target, line.line);
        continue;
      }
      std::erase_if(result_.computed, [&](const auto& c) { return c.first == target; });
      if (target == "revision") {
        if (values.size() != 1 || is_sequence) {
          return Error(line.line, "'revision' must be a single string (Alembic fails on a "
                                  "tuple, list or None)");
        }
        result_.revision = values[0];
        result_.revision_line = line.line;
        have_revision_ = true;
      } else if (target == "down_revision") {
        result_.down_revisions = std::move(values);
        have_down_ = true;
      } else if (target == "depends_on") {
        result_.depends_on = std::move(values);
      } else {
        result_.branch_labels = std::move(values);
      }
    }
    return absl::OkStatus();
  }
  // `target` is assigned a value only Python can work out.
  void Computed(absl::string_view target, int line) {
    for (const auto& c : result_.computed) {
      if (c.first == target) return;
    }
    result_.computed.emplace_back(std::string(target), line);
    if (target == "revision") {
      result_.revision.clear();
      result_.revision_line = line;
      have_revision_ = true;
    } else if (target == "down_revision") {
      result_.down_revisions.clear();
      have_down_ = true;
    } else if (target == "depends_on") {
      result_.depends_on.clear();
    } else {
      result_.branch_labels.clear();
    }
  }
  static bool IsTracked(absl::string_view name) {
    return name == "revision" || name == "down_revision" || name == "branch_labels" ||
           name == "depends_on";
  }

  static bool IsDocstring(const LogicalLine& line) {
    if (!line.top_level) return false;
    for (const Token& t : line.tokens) {
      if (t.kind != TokenKind::kString) return false;
      // Only a text string is a docstring: no b or f prefix.
      for (char c : t.text.substr(0, t.text.find_first_of("'\""))) {
        if (c == 'b' || c == 'B' || c == 'f' || c == 'F') return false;
      }
    }
    return true;
  }

  void ReadDocstring(const LogicalLine& line) {
    std::string doc;
    for (const Token& t : line.tokens) doc += DecodeString(t.text).value;
    result_.long_doc = PyStrip(doc);
    size_t para = result_.long_doc.find("\n\n");
    result_.doc = para == std::string::npos ? result_.long_doc : result_.long_doc.substr(0, para);
    for (absl::string_view l : absl::StrSplit(result_.long_doc, '\n')) {
      absl::string_view s = absl::StripAsciiWhitespace(l);
      if (absl::StartsWith(s, "Revises:")) {
        result_.revises = std::string(absl::StripAsciiWhitespace(s.substr(8)));
        break;
      }
    }
  }

  // Tracks whether `def upgrade/downgrade` has a body of only `pass`, `...`
  // or a docstring (an empty autogenerated migration).
  void StartFunction(const LogicalLine& line) {
    absl::string_view name = line.tokens[1].text;
    if (name == "upgrade") {
      result_.upgrade_line = line.line;
      function_ = &result_.upgrade_is_empty;
    } else if (name == "downgrade") {
      result_.downgrade_line = line.line;
      function_ = &result_.downgrade_is_empty;
    } else {
      return;
    }
    function_empty_ = true;
    // A one-line body: `def upgrade(): pass`.
    const std::vector<Token>& head = line.tokens;
    int depth = 0;
    for (size_t k = 2; k < head.size(); ++k) {
      if (head[k].text == "(" || head[k].text == "[") ++depth;
      if (head[k].text == ")" || head[k].text == "]") --depth;
      if (depth == 0 && head[k].text == ":") {
        if (k + 1 < head.size()) function_empty_ = IsTrivialStatement(head, k + 1);
        break;
      }
    }
  }

  void EndFunction() {
    if (function_ != nullptr) *function_ = function_empty_;
    function_ = nullptr;
  }

  static bool IsTrivialStatement(const std::vector<Token>& t, size_t from) {
    for (size_t k = from; k < t.size(); ++k) {
      bool trivial = (t[k].kind == TokenKind::kName && t[k].text == "pass") ||
                     t[k].kind == TokenKind::kString || t[k].text == "." || t[k].text == ";";
      if (!trivial) return false;
    }
    return true;
  }

  // `a = b = value` / `a: T = value`: fills the targets and where the value
  // starts. Returns false for anything that is not a plain assignment.
  static bool SplitAssignment(const LogicalLine& line, Targets* targets,
                              size_t* value_start) {
    const std::vector<Token>& t = line.tokens;
    size_t k = 0;
    while (k < t.size()) {
      if (t[k].kind != TokenKind::kName) return false;
      size_t name = k++;
      if (k < t.size() && t[k].text == ":") {
        // Skip the annotation up to the `=` at bracket depth 0.
        int depth = 0;
        ++k;
        while (k < t.size() && !(depth == 0 && t[k].text == "=")) {
          if (t[k].text == "(" || t[k].text == "[" || t[k].text == "{") ++depth;
          if (t[k].text == ")" || t[k].text == "]" || t[k].text == "}") --depth;
          ++k;
        }
        if (k >= t.size()) return false;  // annotation without a value
        targets->push_back(t[name].text);
        *value_start = k + 1;
        return *value_start <= t.size();
      }
      if (k >= t.size() || t[k].text != "=") return false;
      targets->push_back(t[name].text);
      ++k;
      *value_start = k;
      // Another `name =` follows for a chained assignment.
      if (!(k + 1 < t.size() && t[k].kind == TokenKind::kName && t[k + 1].text == "=")) break;
    }
    return !targets->empty();
  }

  // Reads a literal value: None, strings, or a tuple/list of strings.
  absl::Status ReadLiteral(const LogicalLine& line, size_t start, absl::string_view target,
                           std::vector<std::string>* values, bool* is_sequence) {
    const std::vector<Token>& t = line.tokens;
    auto not_literal = [&](int at_line) {
      return Error(at_line, absl::StrCat("the value of '", target,
                                         "' is not a literal (a string, None, or a tuple or "
                                         "list of strings); Alembic would have to run code "
                                         "to know it"));
    };
    if (start >= t.size()) return not_literal(line.line);
    size_t end = t.size();
    if (t[end - 1].text == ";") --end;
    if (start + 1 == end && t[start].kind == TokenKind::kName && t[start].text == "None") {
      return absl::OkStatus();
    }
    size_t k = start;
    bool bracketed = false;
    if (t[k].text == "(" || t[k].text == "[") {
      if (t[end - 1].text != (t[k].text == "(" ? ")" : "]")) return not_literal(t[k].line);
      bool is_list = t[k].text == "[";
      ++k;
      --end;
      bracketed = true;
      *is_sequence = true;
      if (k == end) return absl::OkStatus();  // () or []
      // A parenthesised single string without a comma is just that string.
      if (!is_list) {
        bool has_comma = false;
        for (size_t m = k; m < end; ++m) has_comma |= t[m].text == ",";
        bracketed = has_comma;
        *is_sequence = has_comma;
      }
    }
    bool expect_item = true;
    bool any_comma = false;
    while (k < end) {
      if (expect_item) {
        if (t[k].kind == TokenKind::kName && t[k].text == "None" && !bracketed) {
          ++k;
          expect_item = false;
          continue;
        }
        if (t[k].kind != TokenKind::kString) return not_literal(t[k].line);
        std::string item;
        while (k < end && t[k].kind == TokenKind::kString) {
          StringValue v = DecodeString(t[k].text);
          if (v.is_bytes || v.is_fstring) return not_literal(t[k].line);
          item += v.value;
          ++k;
        }
        values->push_back(std::move(item));
        expect_item = false;
      } else {
        if (t[k].text != ",") return not_literal(t[k].line);
        any_comma = true;
        *is_sequence = true;
        expect_item = true;
        ++k;
      }
    }
    // A lone "" is None for down_revision (Alembic's tuple_rev_as_scalar).
    // For branch_labels and depends_on Alembic keeps it: '' is a label, and
    // depends_on = '' still makes a base "not real" (see RevisionGraph).
    if (target == "down_revision" && !any_comma && values->size() == 1 && (*values)[0].empty()) {
      values->clear();
    }
    return absl::OkStatus();
  }

  absl::Status Error(int line, absl::string_view message) const {
    const std::string text = line <= 0 ? absl::StrCat(result_.path, ": ", message)
                                       : absl::StrCat(result_.path, ":", line, ": ", message);
    return WithFileLocation(absl::InvalidArgumentError(text),
                            {result_.path, std::max(line, 0), std::string(message)});
  }

  RevisionFile& result_;
  bool have_revision_ = false;
  bool have_down_ = false;
  std::optional<bool>* function_ = nullptr;  // the function whose body is being read
  bool function_empty_ = true;
};

}  // namespace

absl::Status VerifyRevisionId(absl::string_view id) {
  std::set<char> bad;
  for (char c : id) {
    if (c == '@' || c == '-' || c == '+' || c == ':') bad.insert(c);
  }
  if (id.empty()) return absl::InvalidArgumentError("Revision identifier is empty");
  if (bad.empty()) return absl::OkStatus();
  std::vector<std::string> chars;
  for (char c : bad) chars.emplace_back(1, c);
  return absl::InvalidArgumentError(absl::StrCat("Character(s) '", absl::StrJoin(chars, ", "),
                                                 "' not allowed in revision identifier '", id,
                                                 "'"));
}

absl::Status ParseRevisionFileInto(absl::string_view source, absl::string_view path,
                                   absl::string_view filename, RevisionFile* out) {
  *out = RevisionFile();
  return FileParser(path, filename, out).Parse(source);
}

absl::StatusOr<RevisionFile> ParseRevisionFile(absl::string_view source, absl::string_view path,
                                               absl::string_view filename) {
  RevisionFile file;
  absl::Status status = ParseRevisionFileInto(source, path, filename, &file);
  if (!status.ok()) return status;
  return file;
}

}  // namespace lockstep::migrations
