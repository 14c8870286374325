// Where the coordinator finds its StepExecutors (in-process and distributed).
#pragma once

#include "common/step_executor.h"
#include "worker/local_executor.h"
