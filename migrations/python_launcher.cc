#include "migrations/python_launcher.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lockstep::migrations {

std::string LocateCommand(const std::string& command, const std::string& cwd) {
  if (command.find('/') != std::string::npos) {
    return command[0] == '/' || cwd.empty() ? command : cwd + "/" + command;
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : std::string(dir), "/", command);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::vector<std::string> LauncherInterpreter(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  std::string text(8192, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.rfind("#!", 0) != 0) return {};
  const bool alembic = text.find("from alembic.config import main") != std::string::npos ||
                       text.find("'console_scripts', 'alembic'") != std::string::npos ||
                       text.find("\"console_scripts\", \"alembic\"") != std::string::npos;
  if (!alembic) return {};
  std::string line = text.substr(2, text.find('\n') - 2);
  std::vector<std::string> words = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  bool python = false;
  for (const std::string& w : words) python = python || w.find("python") != std::string::npos;
  return python ? words : std::vector<std::string>{};
}

std::vector<std::string> CommandInterpreter(const std::vector<std::string>& cmd,
                                            const std::string& cwd) {
  if (cmd.size() == 3 && cmd[1] == "-m" && cmd[2] == "alembic") return {cmd[0]};
  if (cmd.size() != 1) return {};
  std::string file = LocateCommand(cmd[0], cwd);
  return file.empty() ? std::vector<std::string>{} : LauncherInterpreter(file);
}

std::vector<std::string> DefaultPython() {
  const std::string alembic = LocateCommand("alembic", "");
  std::vector<std::string> found = alembic.empty() ? std::vector<std::string>{}
                                                   : LauncherInterpreter(alembic);
  return found.empty() ? std::vector<std::string>{"python3"} : found;
}

}  // namespace lockstep::migrations
