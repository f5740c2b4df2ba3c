// Text that leaves lockstepd (a gRPC reply, a metric label, a JSON log line)
// must be valid UTF-8: protobuf refuses to parse a string field that is not,
// so one bad byte in a revision id read from a database, a file name or
// Alembic's output would make every reply that carries it unreadable.
//
// Example:
//   ValidUtf8("caf\xe9");           // "caf\uFFFD": the Latin-1 byte replaced
//   CutUtf8("h\xc3\xa9llo", 2);     // "h": never half of the two-byte é
//
// Thread-safe: pure functions.
#ifndef LOCKSTEP_DAEMON_MODEL_UTF8_H_
#define LOCKSTEP_DAEMON_MODEL_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace lockstep::daemon {

// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms,
// no surrogates, nothing past U+10FFFF) at the start of `s`; 0 when `s` does
// not start with one (or is empty).
inline size_t Utf8SequenceLength(std::string_view s) {
  if (s.empty()) return 0;
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  }
  return n;
}

inline bool IsValidUtf8(std::string_view s) {
  while (!s.empty()) {
    size_t n = Utf8SequenceLength(s);
    if (n == 0) return false;
    s.remove_prefix(n);
  }
  return true;
}

// `s` with every byte that does not belong to a well-formed sequence
// replaced by U+FFFD.
inline std::string ValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    size_t n = Utf8SequenceLength(s);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      n = 1;
    } else {
      out.append(s.data(), n);
    }
    s.remove_prefix(n);
  }
  return out;
}

// The longest prefix of `s` of at most `max_bytes` bytes that does not end
// inside a multi-byte character (it may still hold other invalid bytes;
// ValidUtf8 for those).
inline std::string_view CutUtf8(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t end = max_bytes;
  // Step back over continuation bytes to the start of the character that
  // straddles the cut, at most three.
  size_t back = 0;
  while (end > 0 && back < 3 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) {
    --end;
    ++back;
  }
  return s.substr(0, end);
}

// The longest suffix of `s` of at most `max_bytes` bytes that does not
// start inside a multi-byte character (for "the last 64 KiB of output").
inline std::string_view CutUtf8Front(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t start = s.size() - max_bytes;
  size_t skipped = 0;
  while (start < s.size() && skipped < 3 &&
         (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
    ++start;
    ++skipped;
  }
  return s.substr(start);
}

// `s` for a text log line: valid UTF-8 (ValidUtf8), control characters as
// \xNN, and each line break followed by four spaces, so no text from a
// request or a database (an --actor holding "\n2026-... info ...") can
// start a line of its own that reads like lockstepd's.
inline std::string LogSafe(std::string_view s) {
  std::string valid = ValidUtf8(s);
  std::string out;
  out.reserve(valid.size());
  static constexpr char kHex[] = "0123456789abcdef";
  for (char ch : valid) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\n    ";
    } else if (c == '\t') {
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_MODEL_UTF8_H_
