// libFuzzer target: the alembic.ini reader, including interpolation.
#include <cstdint>
#include <string>

#include "migrations/ini_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto ini = lockstep::migrations::IniFile::Parse(text, "fuzz.ini");
  if (!ini.ok()) return 0;
  ini->SetDefault("here", "/fuzz");
  for (const char* key : {"script_location", "version_locations", "version_path_separator",
                          "path_separator", "sourceless", "x"}) {
    (void)ini->Get("alembic", key);
  }
  return 0;
}
