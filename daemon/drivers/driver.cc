#include "daemon/drivers/driver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "config/inventory.h"
#include "daemon/drivers/mysql_driver.h"
#include "daemon/drivers/postgres_driver.h"
#include "daemon/drivers/sqlite_driver.h"

namespace lockstep::daemon {
namespace {

// Stands in for a dialect lockstep has no driver for yet (MySQL): every
// call fails, so callers need no special case.
class UnsupportedDriver : public Driver {
 public:
  explicit UnsupportedDriver(config::Dialect dialect) : dialect_(dialect) {}

  config::Dialect dialect() const override { return dialect_; }
  absl::StatusOr<std::unique_ptr<DatabaseLock>> Lock(const VersionTarget&,
                                                     const config::DatabaseUrl&, absl::Duration,
                                                     IfMissing) override {
    return Unsupported();
  }
  absl::StatusOr<Backup> TakeBackup(const VersionTarget&, const config::DatabaseUrl&,
                                    const std::string&, absl::Duration) override {
    return Unsupported();
  }
  absl::Status RestoreBackup(const Backup&, const config::DatabaseUrl&, absl::Duration) override {
    return Unsupported();
  }
  absl::StatusOr<BackupComparison> CompareWithBackup(const Backup&, const config::DatabaseUrl&,
                                                     std::vector<std::string>, absl::Duration,
                                                     absl::Duration) override {
    return Unsupported();
  }
  bool RepairAfterKilledWriter(const VersionTarget&, const VersionRead&) override { return false; }
  bool transactional_ddl() const override { return false; }
  std::vector<std::string> ChildEnvironment(const config::DatabaseUrl&) const override {
    return {};
  }

 protected:
  VersionRead ReadRows(const VersionTarget&) override {
    VersionRead out;
    out.error = absl::StrCat(Name(), " is not supported yet");
    return out;
  }

 private:
  std::string Name() const {
    return dialect_ == config::Dialect::kMysql ? "MySQL"
                                               : std::string(config::DialectName(dialect_));
  }
  absl::Status Unsupported() const {
    return absl::UnimplementedError(absl::StrCat(Name(), " is not supported yet"));
  }

  const config::Dialect dialect_;
};

}  // namespace

absl::StatusOr<config::DatabaseUrl> ConnectUrl(const VersionTarget& target) {
  absl::StatusOr<std::optional<std::string>> password =
      config::ResolvePassword(target.url, target.secret, target.name);
  if (!password.ok()) return password.status();
  config::DatabaseUrl url = target.url;
  url.password = *password;
  return url;
}

absl::StatusOr<config::DatabaseUrl> DiscoverUrl(const config::DiscoverRule& rule) {
  if (!rule.url) return absl::InvalidArgumentError("a discover query needs a url");
  config::DatabaseUrl url = *rule.url;
  absl::StatusOr<std::optional<std::string>> pw =
      config::ResolvePassword(url, rule.secret, absl::StrCat(rule.environment, " discover"));
  if (!pw.ok()) return pw.status();
  url.password = *pw;
  return url;
}

std::vector<Discovered> DiscoveredOnServer(const config::DiscoverRule& rule,
                                           std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  std::vector<Discovered> out;
  for (std::string& name : names) {
    Discovered d;
    d.url = *rule.url;
    d.url.database = name;
    d.name = std::move(name);
    d.secret = rule.secret;
    out.push_back(std::move(d));
  }
  return out;
}

Drivers::Drivers(std::vector<std::unique_ptr<Driver>> drivers) {
  for (std::unique_ptr<Driver>& d : drivers) {
    const config::Dialect dialect = d->dialect();
    drivers_[dialect] = std::move(d);
  }
  for (config::Dialect d :
       {config::Dialect::kSqlite, config::Dialect::kPostgresql, config::Dialect::kMysql}) {
    if (drivers_.count(d) == 0) drivers_[d] = std::make_unique<UnsupportedDriver>(d);
  }
}

Driver& Drivers::For(config::Dialect dialect) const { return *drivers_.at(dialect); }

absl::StatusOr<std::vector<Discovered>> Drivers::Discover(const config::DiscoverRule& rule) {
  if (!rule.glob.empty()) return For(config::Dialect::kSqlite).Discover(rule);
  if (!rule.url) return absl::InvalidArgumentError("a discover rule needs a glob or a url");
  return For(*rule.url).Discover(rule);
}

std::unique_ptr<Drivers> MakeDrivers(const ReaderOptions& options) {
  std::vector<std::unique_ptr<Driver>> drivers;
  drivers.push_back(MakePostgresDriver(options));
  drivers.push_back(MakeMysqlDriver(options));
  drivers.push_back(MakeSqliteDriver(options));
  return std::make_unique<Drivers>(std::move(drivers));
}

SchemaFilter SchemaFilterFor(const VersionTarget& t, const std::vector<std::string>& ignore) {
  SchemaFilter filter;
  filter.only_schema = t.schema_scope;
  filter.version_table = t.version_table_schema.empty() || t.version_table_schema == "public" ||
                                 t.version_table_schema == t.schema_scope
                             ? t.version_table
                             : absl::StrCat(t.version_table_schema, ".", t.version_table);
  filter.ignore = ignore;
  return filter;
}

bool SchemaFilter::Skips(const std::string& name) const {
  return name == version_table || config::MatchesAnyPattern(ignore, name);
}

}  // namespace lockstep::daemon
