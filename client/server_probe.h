// What kvmesh-load learns from the server before a run: when it is ready (GET /ready, or /health
// or /v1/models on servers without kvmesh's endpoints), its model and context length, and
// whether it counts tokens (POST /tokenize).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "client/http_client.h"
#include "client/workloads.h"

namespace kvmesh::load {

// Waits until the server answers 200 on GET /ready; a 404 there (a server without it) moves on to
// /health, then /v1/models. Every `report_every_s` seconds a line on `log` says what it waits for
// and why; after timeout_s a last line says why it gave up. True once ready.
bool wait_ready(const HttpTarget& target, double timeout_s, double report_every_s, std::FILE* log);

// The seconds between "waiting for" lines for a --ready-timeout: 5, or fewer (at least 1) for
// timeouts under 20 s.
double ready_report_interval(double timeout_s);

// The model to name in requests (the first of GET /v1/models unless given) and its context length
// (max_model_len, when the server says).
void learn_model(const HttpTarget& target, std::string& model, int64_t& max_model_len);

// /tokenize when the server counts tokens there (one probe), otherwise a service that counts
// nothing (TokenService::can_count() false).
std::unique_ptr<TokenService> token_service(const HttpTarget& target);

}  // namespace kvmesh::load
