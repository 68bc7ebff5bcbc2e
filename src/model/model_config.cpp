#include "ferry/model_config.h"
