import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Cancel as _agon_v1_Cancel, Cancel__Output as _agon_v1_Cancel__Output } from './agon/v1/Cancel.js';
import type { Capabilities as _agon_v1_Capabilities, Capabilities__Output as _agon_v1_Capabilities__Output } from './agon/v1/Capabilities.js';
import type { CoordinatorClient as _agon_v1_CoordinatorClient, CoordinatorDefinition as _agon_v1_CoordinatorDefinition } from './agon/v1/Coordinator.js';
import type { CoordinatorMessage as _agon_v1_CoordinatorMessage, CoordinatorMessage__Output as _agon_v1_CoordinatorMessage__Output } from './agon/v1/CoordinatorMessage.js';
import type { Evaluation as _agon_v1_Evaluation, Evaluation__Output as _agon_v1_Evaluation__Output } from './agon/v1/Evaluation.js';
import type { EvaluationFailed as _agon_v1_EvaluationFailed, EvaluationFailed__Output as _agon_v1_EvaluationFailed__Output } from './agon/v1/EvaluationFailed.js';
import type { FetchParamsRequest as _agon_v1_FetchParamsRequest, FetchParamsRequest__Output as _agon_v1_FetchParamsRequest__Output } from './agon/v1/FetchParamsRequest.js';
import type { Finished as _agon_v1_Finished, Finished__Output as _agon_v1_Finished__Output } from './agon/v1/Finished.js';
import type { GradientChunk as _agon_v1_GradientChunk, GradientChunk__Output as _agon_v1_GradientChunk__Output } from './agon/v1/GradientChunk.js';
import type { GradientHeader as _agon_v1_GradientHeader, GradientHeader__Output as _agon_v1_GradientHeader__Output } from './agon/v1/GradientHeader.js';
import type { Heartbeat as _agon_v1_Heartbeat, Heartbeat__Output as _agon_v1_Heartbeat__Output } from './agon/v1/Heartbeat.js';
import type { Hello as _agon_v1_Hello, Hello__Output as _agon_v1_Hello__Output } from './agon/v1/Hello.js';
import type { JoinRequest as _agon_v1_JoinRequest, JoinRequest__Output as _agon_v1_JoinRequest__Output } from './agon/v1/JoinRequest.js';
import type { JoinResponse as _agon_v1_JoinResponse, JoinResponse__Output as _agon_v1_JoinResponse__Output } from './agon/v1/JoinResponse.js';
import type { Leaving as _agon_v1_Leaving, Leaving__Output as _agon_v1_Leaving__Output } from './agon/v1/Leaving.js';
import type { Microtask as _agon_v1_Microtask, Microtask__Output as _agon_v1_Microtask__Output } from './agon/v1/Microtask.js';
import type { ParamChunk as _agon_v1_ParamChunk, ParamChunk__Output as _agon_v1_ParamChunk__Output } from './agon/v1/ParamChunk.js';
import type { RunInfoReply as _agon_v1_RunInfoReply, RunInfoReply__Output as _agon_v1_RunInfoReply__Output } from './agon/v1/RunInfoReply.js';
import type { RunInfoRequest as _agon_v1_RunInfoRequest, RunInfoRequest__Output as _agon_v1_RunInfoRequest__Output } from './agon/v1/RunInfoRequest.js';
import type { StatusReply as _agon_v1_StatusReply, StatusReply__Output as _agon_v1_StatusReply__Output } from './agon/v1/StatusReply.js';
import type { StatusRequest as _agon_v1_StatusRequest, StatusRequest__Output as _agon_v1_StatusRequest__Output } from './agon/v1/StatusRequest.js';
import type { SubmitReply as _agon_v1_SubmitReply, SubmitReply__Output as _agon_v1_SubmitReply__Output } from './agon/v1/SubmitReply.js';
import type { TaskAck as _agon_v1_TaskAck, TaskAck__Output as _agon_v1_TaskAck__Output } from './agon/v1/TaskAck.js';
import type { WorkerMessage as _agon_v1_WorkerMessage, WorkerMessage__Output as _agon_v1_WorkerMessage__Output } from './agon/v1/WorkerMessage.js';
import type { WorkerStatus as _agon_v1_WorkerStatus, WorkerStatus__Output as _agon_v1_WorkerStatus__Output } from './agon/v1/WorkerStatus.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  agon: {
    v1: {
      Cancel: MessageTypeDefinition<_agon_v1_Cancel, _agon_v1_Cancel__Output>
      Capabilities: MessageTypeDefinition<_agon_v1_Capabilities, _agon_v1_Capabilities__Output>
      Coordinator: SubtypeConstructor<typeof grpc.Client, _agon_v1_CoordinatorClient> & { service: _agon_v1_CoordinatorDefinition }
      CoordinatorMessage: MessageTypeDefinition<_agon_v1_CoordinatorMessage, _agon_v1_CoordinatorMessage__Output>
      Dtype: EnumTypeDefinition
      Evaluation: MessageTypeDefinition<_agon_v1_Evaluation, _agon_v1_Evaluation__Output>
      EvaluationFailed: MessageTypeDefinition<_agon_v1_EvaluationFailed, _agon_v1_EvaluationFailed__Output>
      FetchParamsRequest: MessageTypeDefinition<_agon_v1_FetchParamsRequest, _agon_v1_FetchParamsRequest__Output>
      Finished: MessageTypeDefinition<_agon_v1_Finished, _agon_v1_Finished__Output>
      GradientChunk: MessageTypeDefinition<_agon_v1_GradientChunk, _agon_v1_GradientChunk__Output>
      GradientHeader: MessageTypeDefinition<_agon_v1_GradientHeader, _agon_v1_GradientHeader__Output>
      Heartbeat: MessageTypeDefinition<_agon_v1_Heartbeat, _agon_v1_Heartbeat__Output>
      Hello: MessageTypeDefinition<_agon_v1_Hello, _agon_v1_Hello__Output>
      JoinRequest: MessageTypeDefinition<_agon_v1_JoinRequest, _agon_v1_JoinRequest__Output>
      JoinResponse: MessageTypeDefinition<_agon_v1_JoinResponse, _agon_v1_JoinResponse__Output>
      Leaving: MessageTypeDefinition<_agon_v1_Leaving, _agon_v1_Leaving__Output>
      Microtask: MessageTypeDefinition<_agon_v1_Microtask, _agon_v1_Microtask__Output>
      ParamChunk: MessageTypeDefinition<_agon_v1_ParamChunk, _agon_v1_ParamChunk__Output>
      RunInfoReply: MessageTypeDefinition<_agon_v1_RunInfoReply, _agon_v1_RunInfoReply__Output>
      RunInfoRequest: MessageTypeDefinition<_agon_v1_RunInfoRequest, _agon_v1_RunInfoRequest__Output>
      StatusReply: MessageTypeDefinition<_agon_v1_StatusReply, _agon_v1_StatusReply__Output>
      StatusRequest: MessageTypeDefinition<_agon_v1_StatusRequest, _agon_v1_StatusRequest__Output>
      SubmitReply: MessageTypeDefinition<_agon_v1_SubmitReply, _agon_v1_SubmitReply__Output>
      TaskAck: MessageTypeDefinition<_agon_v1_TaskAck, _agon_v1_TaskAck__Output>
      WorkerMessage: MessageTypeDefinition<_agon_v1_WorkerMessage, _agon_v1_WorkerMessage__Output>
      WorkerStatus: MessageTypeDefinition<_agon_v1_WorkerStatus, _agon_v1_WorkerStatus__Output>
    }
  }
}

