#include "daemon/metrics/metrics_server.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/stat.h>

#include <cstdio>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lockstep::daemon {

// server.tls's certificate chain and key as the handshakes present them:
// loaded again when either file changes (inode, size, mtime), checked at
// each handshake (two stat calls); a pair that does not load keeps the
// last good one.
struct MetricsServer::Certificates {
  std::string cert_path;
  std::string key_path;
  std::mutex mu;
  X509* cert = nullptr;
  STACK_OF(X509) * chain = nullptr;  // the certificates after the first
  EVP_PKEY* key = nullptr;
  std::string stamp;  // of the files last loaded

  ~Certificates() { Clear(); }

  void Clear() {
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    cert = nullptr;
    chain = nullptr;
    key = nullptr;
  }

  static std::string Stamp(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return "";
    return absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                        st.st_mtim.tv_nsec);
  }

  // Loads the files if they changed; false when nothing usable is loaded.
  // `mu` held.
  bool Refresh(std::string* error) {
    const std::string now = Stamp(cert_path) + "|" + Stamp(key_path);
    if (now == stamp && cert != nullptr) return true;
    X509* new_cert = nullptr;
    STACK_OF(X509)* new_chain = sk_X509_new_null();
    EVP_PKEY* new_key = nullptr;
    if (FILE* f = std::fopen(cert_path.c_str(), "r")) {
      new_cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
      while (X509* more = PEM_read_X509(f, nullptr, nullptr, nullptr))
        sk_X509_push(new_chain, more);
      std::fclose(f);
    }
    if (FILE* f = std::fopen(key_path.c_str(), "r")) {
      new_key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
      std::fclose(f);
    }
    ERR_clear_error();  // the end of the chain reads as an error
    if (new_cert == nullptr || new_key == nullptr ||
        X509_check_private_key(new_cert, new_key) != 1) {
      X509_free(new_cert);
      sk_X509_pop_free(new_chain, X509_free);
      EVP_PKEY_free(new_key);
      ERR_clear_error();
      if (error != nullptr) {
        *error = absl::StrCat("server.tls: cannot load the certificate ", cert_path,
                              " with its key ", key_path, " (PEM, and the key must match)");
      }
      return cert != nullptr;  // the last good pair stays
    }
    Clear();
    cert = new_cert;
    chain = new_chain;
    key = new_key;
    stamp = now;
    return true;
  }

  // OpenSSL's certificate callback: this handshake presents the pair as the
  // files hold it now.
  static int Present(SSL* ssl, void* arg) {
    auto* self = static_cast<Certificates*>(arg);
    std::lock_guard<std::mutex> lock(self->mu);
    if (!self->Refresh(nullptr)) return 0;
    if (SSL_use_certificate(ssl, self->cert) != 1 || SSL_use_PrivateKey(ssl, self->key) != 1 ||
        SSL_set1_chain(ssl, self->chain) != 1) {
      return 0;
    }
    return 1;
  }
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, std::shared_ptr<prometheus::Registry> registry,
    const std::optional<config::TlsConfig>& tls) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("server.metrics_listen: '", listen, "' is not host:port"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  if (tls) {
    auto certs = std::make_shared<Certificates>();
    certs->cert_path = tls->cert;
    certs->key_path = tls->key;
    std::string error;
    {
      std::lock_guard<std::mutex> lock(certs->mu);
      if (!certs->Refresh(&error)) return absl::InvalidArgumentError(error);
    }
    const std::string client_ca = tls->client_ca;
    auto server = std::make_unique<httplib::SSLServer>([certs, client_ca](SSL_CTX& ctx) {
      SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
      SSL_CTX_set_cert_cb(&ctx, &Certificates::Present, certs.get());
      if (!client_ca.empty()) {
        if (SSL_CTX_load_verify_locations(&ctx, client_ca.c_str(), nullptr) != 1) return false;
        SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      }
      return true;
    });
    if (!server->is_valid()) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("server.tls: cannot read the client CA ", client_ca, " for /metrics"));
    }
    m->certificates_ = std::move(certs);
    m->server_ = std::move(server);
  } else {
    m->server_ = std::make_unique<httplib::Server>();
  }
  // Scrapes are few: two workers, not one thread per core.
  m->server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  m->server_->Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(prometheus::TextSerializer().Serialize(registry->Collect()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  m->server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("lockstepd: metrics at /metrics\n", "text/plain; charset=utf-8");
  });
  if (!m->server_->bind_to_port(host, port)) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": the address is taken or not local"));
  }
  httplib::Server* server = m->server_.get();
  m->thread_ = std::thread([server] { server->listen_after_bind(); });
  return m;
}

MetricsServer::~MetricsServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace lockstep::daemon
